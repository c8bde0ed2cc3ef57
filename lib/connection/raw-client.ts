import type { PoolClient, QueryResult } from 'pg';
import { ClientReleasedError, PoolError } from '../pool.errors.js';

/**
 * What a raw client tells the lease it belongs to. Its methods are internal as
 * the lease's are: the published declarations drop both, and ConnectionLease
 * still implements the interface there.
 */
export interface RawClientOwner {
  readonly policy: { readonly name: string };
  /** @internal The application called `release()`: with `reason`, the connection must be closed rather than reused. */
  releaseFromApplication(reason: Error | undefined): void;
  /** @internal A query of the raw client ended with `result` (an array for several statements in one text). */
  noteCommands(result: QueryResult | QueryResult[] | undefined, input: string | { text?: string } | undefined): void;
}

type Listener = (...args: unknown[]) => void;
type Callback = (error: Error | null, result?: QueryResult) => void;
/** pg's Submittable (a Cursor, a QueryStream, a COPY stream), with the two calls that end it. */
interface TrackedSubmittable {
  submit(connection: unknown): void;
  handleReadyForQuery?(...args: unknown[]): void;
  handleError?(...args: unknown[]): void;
}

const LISTENER_ADDERS = new Set<PropertyKey>(['on', 'addListener', 'once', 'prependListener', 'prependOnceListener']);
const LISTENER_REMOVERS = new Set<PropertyKey>(['off', 'removeListener']);

/** `client[property]` as a wrapper of the client hands it out: a method bound to the client itself. */
export function memberOf(client: PoolClient, property: PropertyKey): unknown {
  const value: unknown = Reflect.get(client, property, client);
  return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(client) : value;
}

function isSubmittable(value: unknown): value is TrackedSubmittable {
  return typeof (value as { submit?: unknown } | null)?.submit === 'function';
}

/**
 * The pooled client as `getClient()` hands it to the application: pg's
 * `PoolClient` in every respect but what would let one request's use of it
 * reach the next borrower. pg users release a client in `finally`; here
 * `release()` ends the request's hold early (with an error or `true`, the
 * connection is closed) and every later call does nothing, where pg-pool
 * would throw or, after the next checkout, release someone else's client.
 * The listeners the request added are removed when the client goes back,
 * and a query, cursor or COPY still open then is reported to the lease,
 * which closes the connection rather than lend it out mid-statement. Each
 * lease has its own wrapper, so a reference kept after the request refuses
 * to run queries on whoever holds the connection next.
 */
export class RawClient {
  readonly proxy: PoolClient;
  private released = false;
  private retired = false;
  /** Queries, cursors and COPY streams sent through this wrapper and not ended. */
  private inFlight = 0;
  private readonly listeners: Array<[string | symbol, Listener]> = [];

  constructor(
    private readonly client: PoolClient,
    private readonly owner: RawClientOwner,
  ) {
    const own: Partial<Record<PropertyKey, unknown>> = {
      release: this.release,
      end: this.end,
      query: this.query,
      removeAllListeners: this.removeAllListeners,
    };
    this.proxy = new Proxy(client, {
      get: (target, property) => {
        if (Object.hasOwn(own, property)) return own[property];
        if (LISTENER_ADDERS.has(property)) return this.adder(property);
        if (LISTENER_REMOVERS.has(property)) return this.remover(property);
        return memberOf(target, property);
      },
    });
  }

  /** True while a query, cursor or COPY the application sent through this client has not ended. */
  get hasWorkInFlight(): boolean {
    return this.inFlight > 0;
  }

  /** The client went back to the pool: the listeners the request added go, and this wrapper serves no more. */
  retire(): void {
    this.retired = true;
    for (const [event, listener] of this.listeners) this.client.removeListener(event, listener);
    this.listeners.length = 0;
  }

  private readonly release = (error?: unknown): void => {
    if (this.released || this.retired) return;
    this.released = true;
    const reason = !error ? undefined : error instanceof Error ? error : new PoolError('the application released its raw client with an error');
    this.owner.releaseFromApplication(reason);
  };

  /**
   * Like pg's `end()`: the connection is closed, not reused. Resolves at once
   * rather than once it is closed: inside a transaction of the module the
   * close waits for the transaction, which may be awaiting this very call.
   */
  private readonly end = (callback?: (error?: Error) => void): Promise<void> | undefined => {
    this.release(new PoolError('end() called on the raw client'));
    if (!callback) return Promise.resolve();
    process.nextTick(callback);
    return undefined;
  };

  private readonly query = (...args: unknown[]): unknown => {
    const [input] = args;
    const last = args.length > 1 ? args[args.length - 1] : undefined;
    const callback = typeof last === 'function' ? (last as Callback) : undefined;
    if (this.released || this.retired) {
      const refusal = new ClientReleasedError(this.owner.policy.name);
      if (callback) return void process.nextTick(callback, refusal);
      if (isSubmittable(input)) throw refusal;
      return Promise.reject(refusal);
    }
    const client = this.client as unknown as { query(...args: unknown[]): unknown };
    if (isSubmittable(input)) {
      this.track(input);
      return client.query(input);
    }
    this.inFlight++;
    const ended = (result: QueryResult | undefined): void => {
      this.inFlight--;
      this.owner.noteCommands(result, input as string | { text?: string } | undefined);
    };
    if (callback) {
      args[args.length - 1] = (error: Error | null, result?: QueryResult) => {
        ended(error ? undefined : result);
        callback(error, result);
      };
      return client.query(...args);
    }
    const configCallback = (input as { callback?: unknown } | null)?.callback;
    if (typeof configCallback === 'function') {
      // pg also takes the callback inside a query config, and then returns no promise.
      args[0] = {
        ...(input as object),
        callback: (error: Error | null, result?: QueryResult) => {
          ended(error ? undefined : result);
          (configCallback as Callback)(error, result);
        },
      };
      return client.query(...args);
    }
    const promise = client.query(...args) as Promise<QueryResult>;
    promise.then(ended, () => ended(undefined));
    return promise;
  };

  /** A Submittable ends on the server's ReadyForQuery after it (a cursor: once closed) or on its error. */
  private track(submittable: TrackedSubmittable): void {
    this.inFlight++;
    let open = true;
    const ended = (): void => {
      if (open) this.inFlight--;
      open = false;
    };
    for (const method of ['handleReadyForQuery', 'handleError'] as const) {
      const original = submittable[method];
      if (typeof original !== 'function') continue;
      submittable[method] = function (this: unknown, ...args: unknown[]): void {
        ended();
        original.apply(this, args);
      };
    }
  }

  private adder(method: PropertyKey): (event: string | symbol, listener: Listener) => PoolClient {
    return (event, listener) => {
      // A reference kept past the request must not listen on the next borrower's connection.
      if (this.retired) return this.proxy;
      this.listeners.push([event, listener]);
      (this.client[method as 'on'] as (event: string | symbol, listener: Listener) => unknown).call(this.client, event, listener);
      return this.proxy;
    };
  }

  private remover(method: PropertyKey): (event: string | symbol, listener: Listener) => PoolClient {
    return (event, listener) => {
      const index = this.listeners.findIndex(([e, l]) => e === event && l === listener);
      if (index >= 0) this.listeners.splice(index, 1);
      (this.client[method as 'off'] as (event: string | symbol, listener: Listener) => unknown).call(this.client, event, listener);
      return this.proxy;
    };
  }

  /** Removes the listeners the request added (for `event`, or all), never pg-pool's or the module's own. */
  private readonly removeAllListeners = (event?: string | symbol): PoolClient => {
    for (const [e, listener] of [...this.listeners]) if (event === undefined || e === event) this.remover('removeListener')(e, listener);
    return this.proxy;
  };
}
