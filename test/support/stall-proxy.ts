import { connect, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

// First 8 bytes of a PostgreSQL CancelRequest: length 16, code 80877102.
const CANCEL_REQUEST_CODE = 80877102;

export interface TcpProxy {
  readonly port: number;
  /** Stops passing on what the server sends, on every connection, until `resumeResponses()`. */
  holdResponses(): void;
  resumeResponses(): void;
  /** Resolves when the next CancelRequest goes through the proxy. */
  nextCancelRequest(): Promise<void>;
  /** Closes the port and every connection through it: clients then find the port closed. */
  close(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1 in front of `target`, to stall or cut a database's connections. */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  const heldChunks: Array<[Socket, Buffer]> = [];
  let holding = false;
  let onCancelRequest: (() => void) | undefined;

  const track = (socket: Socket): Socket => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    return socket;
  };

  const server = createServer((client) => {
    track(client);
    const upstream = track(connect(target.port, target.host));
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
    client.once('data', (first) => {
      if (first.length === 16 && first.readInt32BE(0) === 16 && first.readInt32BE(4) === CANCEL_REQUEST_CODE) onCancelRequest?.();
    });
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => (holding ? heldChunks.push([client, chunk]) : client.write(chunk)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return {
    port: (server.address() as AddressInfo).port,
    holdResponses: () => void (holding = true),
    resumeResponses: () => {
      holding = false;
      for (const [client, chunk] of heldChunks.splice(0)) client.write(chunk);
    },
    nextCancelRequest: () => new Promise<void>((resolve) => (onCancelRequest = resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}
