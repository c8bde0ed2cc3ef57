import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { DatabaseError } from 'pg';
import type { Datasource } from '../datasource/datasource.js';
import { ConnectionFailedError, ConnectionScopeClosedError, PoolError } from '../pool.errors.js';
import { assertFitsTransactionPooling } from '../pooler/transaction-pooling.js';
import { mayHaveWritten } from '../replication/read-routing.js';
import { sendCancelRequest } from './cancel-request.js';
import { backendKeyOf, endsSession, forgetDeallocatedStatements, isInTransaction } from './pg-client-state.js';

export type QueryInput = string | QueryConfig<unknown[]>;

/**
 * One client checked out of a datasource's pool, and everything the module
 * must know to hand it back safely: whether a query is still running, whether
 * its connection broke, whether the server says a transaction is open.
 */
export class ConnectionLease {
  /** `performance.now()` when the client was handed over, for the hold-time statistics. */
  readonly acquiredAt = performance.now();
  private running = 0;
  private whenIdle: (() => void) | undefined;
  private brokenBy: Error | undefined;
  private released = false;
  /** Set once the client went back to pg-pool: `destroy()` may come while `release()` still rolls back. */
  private handedBack = false;
  private leakTimer: NodeJS.Timeout | undefined;
  private leakReported = false;

  constructor(
    readonly datasource: Datasource,
    readonly client: PoolClient,
    /** Who holds the client (route, handler), for leak warnings. */
    describeHolder?: () => string,
    /** Created where the client was asked for, before any await, for its stack. */
    acquiredAt?: Error,
  ) {
    // A checked-out client whose connection drops emits 'error'; with no
    // listener that kills the process (node-postgres #1611, #2635).
    client.on('error', this.onClientError);
    const threshold = datasource.options.leakDetectionThreshold;
    if (threshold) {
      const acquiredBy = (acquiredAt ?? new Error('acquired here')).stack ?? '';
      this.leakTimer = setTimeout(() => this.reportLeak(acquiredBy, describeHolder?.()), threshold);
      this.leakTimer.unref();
    }
  }

  get isReleased(): boolean {
    return this.released;
  }

  /**
   * Set once a statement that may have written ran on this client (tracked
   * only for datasources with replicas): the scope's reads then stay on the
   * primary, so a request always reads its own writes.
   */
  wrote = false;

  async query<R extends QueryResultRow>(input: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>> {
    if (this.released) throw new ConnectionScopeClosedError(this.datasource.name);
    if (this.brokenBy) throw this.failure(this.brokenBy);
    if (this.datasource.options.transactionPooling) assertFitsTransactionPooling(this.datasource.name, input);
    this.running++;
    try {
      const result = await this.client.query<R>(input, values as unknown[] | undefined);
      if (this.datasource.replicas && mayHaveWritten(result.command)) this.wrote = true;
      return result;
    } catch (error) {
      // A DatabaseError is the server answering, unless it is FATAL (the
      // server ends the session: pg_terminate_backend, shutdown); anything
      // else (connection terminated, query read timeout) leaves it unusable too.
      if (error instanceof DatabaseError && !endsSession(error)) throw error;
      this.brokenBy ??= error as Error;
      throw this.failure(error);
    } finally {
      if (--this.running === 0) this.whenIdle?.();
    }
  }

  /**
   * Gives the client back once its running queries end. With `cancel`, the
   * server is first asked to cancel them (the request that used them is gone).
   * Safe to call more than once.
   */
  release(cancel = false): void {
    if (this.released) return;
    this.released = true;
    if (this.running === 0) return void this.handBack();
    this.whenIdle = () => void this.handBack();
    const key = cancel ? backendKeyOf(this.client) : undefined;
    if (key) void sendCancelRequest(key);
  }

  /**
   * Closes the connection at once, whatever it is doing (shutdown past its
   * drain timeout). A running query is cancelled on the server too, which
   * would otherwise run it to its end for nobody, holding its locks; resolves
   * once that cancel request is sent.
   */
  async destroy(reason: Error): Promise<void> {
    this.brokenBy ??= reason;
    this.released = true;
    const key = this.running > 0 ? backendKeyOf(this.client) : undefined;
    void this.handBack();
    if (key) await sendCancelRequest(key);
  }

  /**
   * Back to the pool, clean: an open transaction (a handler that began one
   * and threw, or forgot to commit) is rolled back, `resetOnRelease` runs,
   * and a connection that broke, failed either step or outlived its
   * lifetime is closed instead of reused.
   */
  private async handBack(): Promise<void> {
    this.whenIdle = undefined;
    const reset = this.datasource.options.resetOnRelease;
    if (!this.brokenBy && (isInTransaction(this.client) || reset)) {
      try {
        if (isInTransaction(this.client)) await this.client.query('ROLLBACK');
        if (reset) {
          await this.client.query(reset);
          await forgetDeallocatedStatements(this.client);
        }
      } catch (error) {
        this.brokenBy ??= error as Error;
      }
    }
    // destroy() during the awaits above already handed the client back: a
    // second release() would throw, unhandled, from this detached promise.
    if (this.handedBack) return;
    this.handedBack = true;
    if (!this.brokenBy && this.datasource.isExpired(this.client)) {
      this.brokenBy = new PoolError('connection reached its maximum lifetime');
    }
    clearTimeout(this.leakTimer);
    if (this.leakReported) {
      this.datasource.warn(`a connection reported as possibly leaked came back after ${this.heldMillis()} ms`);
    }
    this.client.off('error', this.onClientError);
    this.client.release(this.brokenBy);
    this.datasource.leaseEnded(this);
  }

  private heldMillis(): number {
    return Math.round(performance.now() - this.acquiredAt);
  }

  private failure(error: unknown): ConnectionFailedError {
    const reason = error instanceof Error ? error.message : String(error);
    return new ConnectionFailedError(this.datasource.name, reason, { cause: error });
  }

  private reportLeak(acquiredBy: string, holder: string | undefined): void {
    this.leakReported = true;
    this.datasource.warn(
      `a connection has been held for ${this.heldMillis()} ms ` +
        `(leakDetectionThreshold ${this.datasource.options.leakDetectionThreshold} ms)` +
        `${holder ? ` by ${holder}` : ''}; it may have leaked. Acquired at:\n${acquiredBy}`,
    );
  }

  private readonly onClientError = (error: Error): void => {
    // node-postgres may report one failure twice (the server's FATAL, then the closed socket).
    if (this.brokenBy) return;
    this.brokenBy = error;
    this.datasource.warn(`a checked-out connection failed (${error.message}); it will be closed, not reused`);
  };
}
