import { AsyncLocalStorage } from 'node:async_hooks';
import type { ServerResponse } from 'node:http';
import type { Datasource } from '../datasource/datasource.js';
import { ConnectionScopeClosedError, PoolUnavailableError } from '../pool.errors.js';
import type { ConnectionLease } from './connection-lease.js';

interface LeaseSlot {
  readonly pending: Promise<ConnectionLease>;
  lease?: ConnectionLease;
}

const storage = new AsyncLocalStorage<ConnectionScope>();

/** Seconds an HTTP client is told to wait (Retry-After) when no connection could be had. */
const RETRY_AFTER_SECONDS = 1;

/**
 * The unit of work that owns at most one client of each datasource: a request
 * (opened by the module's interceptor) or a `ConnectionScope.run()` call.
 * Clients are borrowed on the first query and all handed back on `close()`.
 */
export class ConnectionScope {
  private readonly slots = new Map<Datasource, LeaseSlot>();
  private closed = false;

  /**
   * @param describeHolder names who holds the scope (route, handler) in leak warnings.
   * @param response the HTTP response of the request the scope belongs to, if any.
   */
  constructor(
    private readonly describeHolder?: () => string,
    private readonly response?: ServerResponse,
  ) {}

  /** The scope of the running code, if any. */
  static current(): ConnectionScope | undefined {
    return storage.getStore();
  }

  /**
   * Runs `fn` in a scope of its own: its queries on each datasource share one
   * client, released when `fn` settles. For work outside a request (cron jobs,
   * queue consumers, scripts) that needs one connection throughout.
   */
  static async run<T>(fn: () => T | Promise<T>): Promise<T> {
    const scope = new ConnectionScope();
    try {
      return await storage.run(scope, fn);
    } finally {
      scope.close();
    }
  }

  /** @internal Runs `fn` with `scope` as the current scope, without closing it. */
  static enter<T>(scope: ConnectionScope, fn: () => T): T {
    return storage.run(scope, fn);
  }

  /** @internal The scope's client of `datasource`, borrowed on first use. */
  lease(datasource: Datasource): Promise<ConnectionLease> {
    if (this.closed) return Promise.reject(new ConnectionScopeClosedError(datasource.name));
    const existing = this.slots.get(datasource);
    // A client closed mid-scope (its transaction could not be rolled back) is replaced by a fresh one.
    if (existing && !existing.lease?.isReleased) return existing.pending;
    const pending = datasource.acquire(this.describeHolder);
    const slot: LeaseSlot = { pending };
    this.slots.set(datasource, slot);
    pending.then(
      (lease) => {
        slot.lease = lease;
        // The scope ended while the client was on its way.
        if (this.closed) lease.release();
      },
      // A failed borrow leaves nothing to release; the next query may try again.
      (error: unknown) => {
        this.slots.delete(datasource);
        // The 503 this error becomes tells the HTTP client when to come back.
        if (error instanceof PoolUnavailableError && this.response && !this.response.headersSent) {
          this.response.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
        }
      },
    );
    return pending;
  }

  /** @internal The scope's client of `datasource` if it already holds one. */
  heldLease(datasource: Datasource): ConnectionLease | undefined {
    const lease = this.slots.get(datasource)?.lease;
    return lease?.isReleased ? undefined : lease;
  }

  /** Ends the scope and hands every client back (once its running query ends). */
  close(): void {
    this.end(false);
  }

  /** Ends the scope because its requester is gone: running queries are cancelled. */
  abort(): void {
    this.end(true);
  }

  private end(cancel: boolean): void {
    if (this.closed) return;
    this.closed = true;
    for (const slot of this.slots.values()) slot.lease?.release(cancel);
  }
}
