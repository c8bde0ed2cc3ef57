import pg from 'pg';

// When a client started to open its connection, on the client itself.
const STARTED = Symbol('nestjs-pg-pool:connectStarted');

type TimedClientBase = pg.ClientBase & { [STARTED]?: number };

/**
 * The pool's client class, noting when each client starts to connect: the
 * pool's 'connect' event then tells how long opening the connection took
 * (TCP, TLS, authentication, startup), which pg reports nowhere.
 */
export function timedClientClass(base: typeof pg.Client = pg.Client): typeof pg.Client {
  return class TimedClient extends base {
    override connect(): Promise<pg.Client>;
    override connect(callback: (err: Error) => void): void;
    override connect(callback?: (err: Error) => void): Promise<pg.Client> | void {
      (this as TimedClientBase)[STARTED] = performance.now();
      return callback ? super.connect(callback) : super.connect();
    }
  };
}

/** Milliseconds `client` (of a timedClientClass()) took to connect; undefined for another client. */
export function connectMillis(client: pg.ClientBase): number | undefined {
  const started = (client as TimedClientBase)[STARTED];
  return started === undefined ? undefined : performance.now() - started;
}
