import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { DatabaseError } from 'pg';
import type { Datasource } from '../datasource/datasource.js';
import { ConnectionScopeClosedError } from '../pool.errors.js';
import { sendCancelRequest } from './cancel-request.js';
import { backendKeyOf, isInTransaction } from './pg-client-state.js';

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

  constructor(
    readonly datasource: Datasource,
    readonly client: PoolClient,
  ) {
    // A checked-out client whose connection drops emits 'error'; with no
    // listener that kills the process (node-postgres #1611, #2635).
    client.on('error', this.onClientError);
  }

  get isReleased(): boolean {
    return this.released;
  }

  async query<R extends QueryResultRow>(input: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>> {
    if (this.released) throw new ConnectionScopeClosedError(this.datasource.name);
    this.running++;
    try {
      return await this.client.query<R>(input, values as unknown[] | undefined);
    } catch (error) {
      // A DatabaseError is the server answering; anything else (connection
      // terminated, query read timeout) leaves the connection unusable.
      if (!(error instanceof DatabaseError)) this.brokenBy ??= error as Error;
      throw error;
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
    if (this.running === 0) return this.handBack();
    this.whenIdle = () => this.handBack();
    const key = cancel ? backendKeyOf(this.client) : undefined;
    if (key) void sendCancelRequest(key);
  }

  /** Closes the connection at once, whatever it is doing (shutdown past its drain timeout). */
  destroy(reason: Error): void {
    this.brokenBy ??= reason;
    this.released = true;
    this.handBack();
  }

  private handBack(): void {
    this.whenIdle = undefined;
    if (!this.brokenBy && isInTransaction(this.client)) {
      void this.rollbackThenHandBack();
      return;
    }
    this.client.off('error', this.onClientError);
    this.client.release(this.brokenBy);
    this.datasource.leaseEnded(this);
  }

  // A handler that began a transaction and never ended it must not pass it on
  // to the next borrower: roll back, or destroy the connection if that fails.
  private async rollbackThenHandBack(): Promise<void> {
    try {
      await this.client.query('ROLLBACK');
    } catch (error) {
      this.brokenBy ??= error as Error;
    }
    this.handBack();
  }

  private readonly onClientError = (error: Error): void => {
    this.brokenBy ??= error;
    this.datasource.warn(`a checked-out connection failed (${error.message}); it will be closed, not reused`);
  };
}
