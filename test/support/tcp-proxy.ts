import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * What the proxy does with traffic:
 * - `forward`: pass bytes both ways (after `delayMillis`, if set);
 * - `hold-responses`: pass what clients send, hold what the server sends
 *   (held bytes flow on `restore()`), like a server stalled mid-query that
 *   still accepts cancel requests;
 * - `blackhole`: accept new connections and keep every socket open, but pass
 *   nothing either way, like a network that silently drops packets (held
 *   bytes flow again on `restore()`, as TCP would retransmit them);
 * - `refuse`: accept new connections and close them at once, like a host
 *   that is up with nothing listening.
 */
export type ProxyMode = 'forward' | 'hold-responses' | 'blackhole' | 'refuse';

interface Link {
  readonly client: Socket;
  upstream?: Socket;
  /** What holdingReadyForQuery() keeps of the server's stream between chunks. */
  fromServer?: { rest: Buffer; afterError: boolean };
  /** Set once terminatingAtStartup() has sent this link's FATAL: nothing more passes. */
  terminated?: boolean;
}

// A PostgreSQL CancelRequest: 16 bytes, its length then this code (protocol "CancelRequest").
const CANCEL_REQUEST_LENGTH = 16;
const CANCEL_REQUEST_CODE = 80877102;

/**
 * A TCP proxy on 127.0.0.1 between a pool and a PostgreSQL server, for
 * network faults: cut every connection, blackhole traffic, stall the
 * server's answers, refuse new connections, delay, close the port.
 */
export class TcpProxy {
  private readonly links = new Set<Link>();
  private mode: ProxyMode = 'forward';
  private cancelWaiters: Array<() => void> = [];
  /** Connections accepted since the proxy started. */
  accepted = 0;
  /** Added to each chunk, each way, while forwarding. */
  delayMillis = 0;
  private readyForQueryHold: { held: () => void; messages: Array<{ to: Socket; message: Buffer }> } | undefined;
  private cancelHold: { held: () => void; requests: Array<{ link: Link; request: Buffer }> } | undefined;
  private terminateAtStartup = false;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {
    server.on('connection', (socket) => this.accept(socket));
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const address = server.address();
    if (!address || typeof address === 'string') throw new Error('proxy has no TCP address');
    return new TcpProxy(server, address.port, target);
  }

  /** Where the proxy listens, for optionsVia(). */
  get address(): { host: string; port: number } {
    return { host: '127.0.0.1', port: this.port };
  }

  /** Connections open through the proxy right now. */
  get openCount(): number {
    return this.links.size;
  }

  /** Drops every open connection (both sides see it closed) and keeps `mode` for new ones. */
  cut(mode: ProxyMode = this.mode): void {
    this.mode = mode;
    for (const link of this.links) this.drop(link);
  }

  /** Stops passing bytes on every connection, open or new, until `restore()`. */
  blackhole(): void {
    this.mode = 'blackhole';
    for (const link of this.links) {
      link.client.pause();
      link.upstream?.pause();
    }
  }

  /** Stops passing what the server sends, on every connection, open or new, until `restore()`. */
  holdResponses(): void {
    this.mode = 'hold-responses';
    for (const link of this.links) link.upstream?.pause();
  }

  /** Closes new connections at once; open ones are left as they are. */
  refuse(): void {
    this.mode = 'refuse';
  }

  /** Back to forwarding: held bytes flow, connections accepted meanwhile reach the server. */
  restore(): void {
    this.mode = 'forward';
    for (const link of this.links) {
      if (!link.upstream) this.connectUpstream(link);
      link.client.resume();
      link.upstream?.resume();
    }
  }

  /**
   * From now on, the server's ReadyForQuery that follows an ErrorResponse is
   * held back (the rest of what the server sends passes) until the returned
   * `release()`: a client then sees the error, and only later the
   * transaction status behind it, as when the two come in separate reads.
   * `held` resolves once such a message is held.
   */
  holdReadyForQueryAfterError(): { held: Promise<void>; release: () => void } {
    let held!: () => void;
    const heldOne = new Promise<void>((resolve) => (held = resolve));
    this.readyForQueryHold = { held, messages: [] };
    return {
      held: heldOne,
      release: () => {
        const hold = this.readyForQueryHold;
        this.readyForQueryHold = undefined;
        for (const { to, message } of hold?.messages ?? []) if (!to.destroyed) to.write(message);
      },
    };
  }

  /**
   * The next connection the proxy accepts is ended by the "server" the
   * moment its startup completes: a FATAL 57P01 (as a fast shutdown sends)
   * right behind its first ReadyForQuery, in the same chunk, then the close.
   * The client sees its connect succeed and its session end in one read.
   */
  terminateNextSessionAtStartup(): void {
    this.terminateAtStartup = true;
  }

  /**
   * From now on, CancelRequests are held: their connection stays open and
   * nothing reaches the server until `release()` passes them on (the server
   * then acts on them and closes their connection), or `drop()` closes their
   * connections unsent. `held` resolves once one is held.
   */
  holdCancelRequests(): { held: Promise<void>; release: () => void; drop: () => void } {
    let held!: () => void;
    const heldOne = new Promise<void>((resolve) => (held = resolve));
    const hold = { held, requests: [] as Array<{ link: Link; request: Buffer }> };
    this.cancelHold = hold;
    const stopHolding = (): Array<{ link: Link; request: Buffer }> => {
      if (this.cancelHold === hold) this.cancelHold = undefined;
      return hold.requests.splice(0);
    };
    return {
      held: heldOne,
      release: () => {
        for (const { link, request } of stopHolding()) if (link.upstream && !link.upstream.destroyed) link.upstream.write(request);
      },
      drop: () => {
        for (const { link } of stopHolding()) this.drop(link);
      },
    };
  }

  /** Resolves when the next CancelRequest passes through the proxy to the server. */
  nextCancelRequest(): Promise<void> {
    return new Promise((resolve) => this.cancelWaiters.push(resolve));
  }

  /** Stops listening and drops every connection: clients then find the port closed. */
  async close(): Promise<void> {
    this.cut('refuse');
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.accepted++;
    client.setNoDelay(true);
    client.on('error', () => undefined);
    if (this.mode === 'refuse') {
      client.destroy();
      return;
    }
    const link: Link = { client };
    this.links.add(link);
    // Once connected upstream, closes are handled by forward().
    client.once('close', () => link.upstream || this.drop(link));
    if (this.mode === 'blackhole') client.pause();
    else this.connectUpstream(link);
  }

  private connectUpstream(link: Link): void {
    const upstream = connect(this.target.port, this.target.host);
    link.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('error', () => undefined);
    if (this.mode === 'hold-responses') upstream.pause();
    link.client.once('data', (first: Buffer) => {
      if (isCancelRequest(first)) for (const resolve of this.cancelWaiters.splice(0)) resolve();
    });
    this.forward(link, link.client, upstream, (chunk) => this.holdingCancelRequest(chunk, link));
    if (this.terminateAtStartup) {
      this.terminateAtStartup = false;
      this.forward(link, upstream, link.client, (chunk) => terminatingAtStartup(chunk, link));
    } else {
      this.forward(link, upstream, link.client, (chunk) => this.holdingReadyForQuery(chunk, link));
    }
  }

  /**
   * What of a chunk from the server passes now, the rest held (see
   * holdReadyForQueryAfterError). Messages are split out of the stream,
   * which may cut them anywhere (PgBouncer passes an ErrorResponse and its
   * ReadyForQuery on in separate writes): `link.fromServer` keeps the part
   * of a message still to come and whether the last one was an error.
   */
  private holdingReadyForQuery(received: Buffer, link: Link): Buffer {
    const hold = this.readyForQueryHold;
    const state = (link.fromServer ??= { rest: Buffer.alloc(0), afterError: false });
    if (!hold) {
      state.rest = Buffer.alloc(0);
      return received;
    }
    const chunk = Buffer.concat([state.rest, received]);
    const passing: Buffer[] = [];
    let offset = 0;
    for (const { type, message, end } of messagesIn(chunk)) {
      if (type === 'Z' && state.afterError) {
        hold.messages.push({ to: link.client, message });
        hold.held();
      } else passing.push(message);
      state.afterError = type === 'E';
      offset = end;
    }
    state.rest = chunk.subarray(offset);
    return Buffer.concat(passing);
  }

  /** What of a chunk from a client passes now: nothing, if it is a CancelRequest to hold (see holdCancelRequests). */
  private holdingCancelRequest(chunk: Buffer, link: Link): Buffer {
    const hold = this.cancelHold;
    if (!hold || !isCancelRequest(chunk)) return chunk;
    hold.requests.push({ link, request: chunk });
    hold.held();
    return Buffer.alloc(0);
  }

  /**
   * Copies `from` to `to`, each chunk `delayMillis` late and in order; when
   * `from` closes, the link is dropped once what it sent has been passed on.
   */
  private forward(link: Link, from: Socket, to: Socket, passing: (chunk: Buffer) => Buffer = (chunk) => chunk): void {
    const queue: Array<{ due: number; chunk: Buffer }> = [];
    let timer: NodeJS.Timeout | undefined;
    let fromClosed = false;
    const flush = (): void => {
      timer = undefined;
      while (queue.length && queue[0].due <= Date.now()) {
        const { chunk } = queue.shift()!;
        if (!to.destroyed) to.write(chunk);
      }
      if (queue.length) timer = setTimeout(flush, queue[0].due - Date.now());
      else if (fromClosed) this.drop(link);
    };
    from.on('data', (received: Buffer) => {
      const chunk = passing(received);
      if (this.delayMillis <= 0 && !queue.length) {
        to.write(chunk);
        return;
      }
      queue.push({ due: Date.now() + this.delayMillis, chunk });
      timer ??= setTimeout(flush, this.delayMillis);
    });
    from.once('close', () => {
      fromClosed = true;
      if (!queue.length) this.drop(link);
    });
  }

  private drop(link: Link): void {
    if (!this.links.delete(link)) return;
    link.client.destroy();
    link.upstream?.destroy();
  }
}

function isCancelRequest(chunk: Buffer): boolean {
  return (
    chunk.length === CANCEL_REQUEST_LENGTH &&
    chunk.readInt32BE(0) === CANCEL_REQUEST_LENGTH &&
    chunk.readInt32BE(4) === CANCEL_REQUEST_CODE
  );
}

// FATAL 57P01, as PostgreSQL ends a session in a fast shutdown.
const ADMIN_SHUTDOWN = errorResponse(['SFATAL', 'VFATAL', 'C57P01', 'Mterminating connection due to administrator command']);

function errorResponse(fields: string[]): Buffer {
  const body = Buffer.from(`${fields.join('\0')}\0\0`, 'utf8');
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([header, body]);
}

/**
 * What of a chunk from the server passes on a link to terminate at startup
 * (see terminateNextSessionAtStartup()): up to its first ReadyForQuery, then
 * the FATAL; then both sockets close. Startup messages are small and come in one
 * chunk from a local server; a chunk without the ReadyForQuery passes whole.
 */
function terminatingAtStartup(chunk: Buffer, link: Link): Buffer {
  if (link.terminated) return Buffer.alloc(0);
  for (const { type, end } of messagesIn(chunk)) {
    if (type !== 'Z') continue;
    link.terminated = true;
    setImmediate(() => {
      link.client.end();
      link.upstream?.destroy();
    });
    return Buffer.concat([chunk.subarray(0, end), ADMIN_SHUTDOWN]);
  }
  return chunk;
}

/** The whole protocol messages at the start of `chunk` (type byte, then a length that counts itself), each with where it ends. */
function* messagesIn(chunk: Buffer): Generator<{ type: string; message: Buffer; end: number }> {
  let offset = 0;
  while (offset + 5 <= chunk.length) {
    const end = offset + 1 + chunk.readInt32BE(offset + 1);
    if (end > chunk.length) return;
    yield { type: String.fromCharCode(chunk[offset]), message: chunk.subarray(offset, end), end };
    offset = end;
  }
}
