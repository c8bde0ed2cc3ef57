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
 * keep-alive timeout. So the answers written during the drain carry
 * `Connection: close` (the client sends no other request on the connection,
 * and Node closes it once the answer is written): those of requests that
 * arrive during the drain, and those Nest hands to the adapter (see
 * answering()). Each answer that ends during the drain also closes the
 * connections idle then, for answers begun before it (a stream, `@Res()`).
 *
 * It counts the requests in flight rather than keeping their responses in a
 * set to mark at the start of the drain: that set cost about 30,000
 * instructions a request, 13 % of one on Express (callgrind, Node 24).
 */
export class HttpServerDrain {
  /** Requests accepted whose response has not closed yet. */
  private inFlight = 0;
  private draining = false;
  /** Ends drain()'s wait, while it waits. */
  private endWait: (() => void) | undefined;

  private constructor(private readonly server: DrainableServer) {
    const drain = this;
    // One listener for every response rather than a closure for each: this runs on every request.
    const closed = function (this: DrainedResponse): void {
      drain.inFlight--;
      if (drain.draining) drain.ended();
    };
    // Runs before the platform's listener, so that a request arriving during the drain is marked before its handler answers.
    server.prependListener('request', (_request: unknown, response: DrainedResponse) => {
      if (this.draining) closeAfter(response);
      this.inFlight++;
      response.on('close', closed);
    });
  }

  /** Watches the requests of `server` from now on, if it is a Node HTTP server; else undefined. */
  static watch(server: unknown): HttpServerDrain | undefined {
    return isDrainable(server) ? new HttpServerDrain(server) : undefined;
  }

  /**
   * Stops accepting connections and resolves once every accepted request is
   * answered, or at `drainUntil` (a `performance.now()` time) with some still
   * open: the datasources then close under them, cancelling their queries.
   * Calling it again (or Nest's own close of the server after it) is harmless.
   */
  async drain(drainUntil: number): Promise<void> {
    this.draining = true;
    // Node (19 and later) also closes the idle keep-alive connections here.
    if (this.server.listening) this.server.close();
    if (this.inFlight === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.endWait = resolve;
      timer = setTimeout(resolve, Math.max(0, drainUntil - performance.now()));
    });
    clearTimeout(timer);
    this.endWait = undefined;
  }

  /** Nest is handing an answer to the adapter (`response`: Node's, or Fastify's reply): during the drain it closes its connection. */
  answering(response: unknown): void {
    if (!this.draining) return;
    const raw = (response as { raw?: DrainedResponse }).raw ?? (response as DrainedResponse);
    if (typeof raw.setHeader === 'function') closeAfter(raw);
  }

  /** An answer ended during the drain: its connection, idle now, is closed before another request comes on it. */
  private ended(): void {
    this.server.closeIdleConnections?.();
    if (this.inFlight === 0) this.endWait?.();
  }
}

/** A request that arrived during the drain: its answer closes the connection. */
function closeAfter(response: DrainedResponse): void {
  // HTTP/2 has no Connection header (Node throws on it): its sessions are the server's to close.
  if (!response.headersSent && response.req.httpVersionMajor < 2) response.setHeader('Connection', 'close');
}

function isDrainable(server: unknown): server is DrainableServer {
  const candidate = server as Partial<DrainableServer> | null | undefined;
  return typeof candidate?.prependListener === 'function' && typeof candidate.close === 'function' && typeof candidate.listening === 'boolean';
}
