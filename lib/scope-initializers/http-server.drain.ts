import { leaveUnscoped } from './connection-scope.http-server.js';

/** What HttpServerDrain needs of a response: Node's http, https and http2 (compatibility API) responses fit. */
interface DrainedResponse {
  readonly headersSent: boolean;
  readonly req: { readonly httpVersionMajor: number };
  setHeader(name: string, value: string): unknown;
  on(event: 'close', listener: (this: DrainedResponse) => void): unknown;
}

type RequestListener = (request: unknown, response: DrainedResponse) => void;

/** What HttpServerDrain needs of a server: Node's http, https and http2 servers all fit. */
interface DrainableServer {
  readonly listening: boolean;
  prependListener(event: 'request', listener: RequestListener): unknown;
  close(): unknown;
  /** Node's http and https servers have it (HTTP/1 keep-alive), http2 servers do not. */
  closeIdleConnections?(): void;
}

/**
 * The first step of a graceful shutdown of an HTTP server, as Go's
 * `http.Server.Shutdown()` and Spring Boot's graceful shutdown take it: stop
 * accepting connections, then let every request already accepted finish,
 * before the datasources under them close.
 *
 * Node's `server.close()` stops accepting and closes the idle keep-alive
 * connections, but a connection whose request is in flight stays open after
 * its answer, and serves the next request the client sends on it until the
 * keep-alive timeout. So the answers written from then on carry
 * `Connection: close` (the client does not send another request on the
 * connection, and Node closes it once the answer is written), and a
 * connection whose answer had started before (a stream) is closed once that
 * answer ends. A request that still arrives on a kept-alive connection is
 * served the same way.
 */
export class HttpServerDrain {
  /** Responses not yet closed, watched from the server's first 'request' listener. */
  private readonly open = new Set<DrainedResponse>();
  /** Responses whose headers were out when the drain began: no `Connection: close` for them. */
  private readonly keptAlive = new WeakSet<DrainedResponse>();
  private draining = false;
  private drained: (() => void) | undefined;

  private constructor(private readonly server: DrainableServer) {
    const drain = this;
    const open = this.open;
    // One listener for every response rather than a closure for each: this runs on every request.
    const closed = function (this: DrainedResponse): void {
      open.delete(this);
      if (drain.draining) drain.ended(this);
    };
    // Runs before the platform's listener, so that a request arriving during the drain is marked before its handler answers.
    server.prependListener(
      'request',
      leaveUnscoped((_request: unknown, response: DrainedResponse) => {
        if (this.draining) this.closeAfter(response);
        open.add(response);
        response.on('close', closed);
      }),
    );
  }

  /** Watches the requests of `server` from now on, if it is a Node HTTP server; else undefined. */
  static watch(server: unknown): HttpServerDrain | undefined {
    return isDrainable(server) ? new HttpServerDrain(server) : undefined;
  }

  /** Requests accepted and not yet answered (or whose answer is still being written). */
  get openCount(): number {
    return this.open.size;
  }

  /**
   * Stops accepting connections and resolves once every accepted request is
   * answered, or at `drainUntil` (a `performance.now()` time) with some still
   * open: the datasources then close under them, cancelling their queries.
   * Calling it again (or Nest's own close of the server after it) is harmless.
   */
  async drain(drainUntil: number): Promise<void> {
    this.draining = true;
    for (const response of this.open) this.closeAfter(response);
    // Node (19 and later) also closes the idle keep-alive connections here.
    if (this.server.listening) this.server.close();
    if (this.open.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.drained = resolve;
      timer = setTimeout(resolve, Math.max(0, drainUntil - performance.now()));
    });
    clearTimeout(timer);
    this.drained = undefined;
  }

  private closeAfter(response: DrainedResponse): void {
    if (response.headersSent) this.keptAlive.add(response);
    // HTTP/2 has no Connection header (Node throws on it): its sessions are the server's to close.
    else if (response.req.httpVersionMajor < 2) response.setHeader('Connection', 'close');
  }

  private ended(response: DrainedResponse): void {
    if (this.keptAlive.has(response)) this.server.closeIdleConnections?.();
    if (this.open.size === 0) this.drained?.();
  }
}

function isDrainable(server: unknown): server is DrainableServer {
  const candidate = server as Partial<DrainableServer> | null | undefined;
  return typeof candidate?.prependListener === 'function' && typeof candidate.close === 'function' && typeof candidate.listening === 'boolean';
}
