import type { Logger } from '@nestjs/common';
import pg from 'pg';
import { ConnectionLease } from '../connection/connection-lease.js';
import type { PoolModuleOptions } from '../interfaces/pool-module-options.interface.js';
import { DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_DELAY_MS } from '../pool.constants.js';
import { DatabaseUnreachableError, PoolClosedError, PoolError } from '../pool.errors.js';
import { delay } from '../pool.utils.js';
import { describeTarget, redactSecrets } from './describe-target.js';
import { PoolStatsRecorder } from './pool-stats.js';

/**
 * One named datasource: its `pg.Pool` and the module's bookkeeping of the
 * clients it lent out, so that shutdown can wait for them and nothing leaks.
 */
export class Datasource {
  readonly pool: pg.Pool;
  /** `user@host:port/database`, safe for logs. */
  readonly target: string;
  readonly stats: PoolStatsRecorder;
  private readonly leases = new Set<ConnectionLease>();
  private closing: Promise<void> | undefined;

  constructor(
    readonly name: string,
    private readonly options: PoolModuleOptions,
    private readonly logger: Logger,
  ) {
    const { name: _name, retryAttempts: _r, retryDelay: _d, drainTimeoutMillis: _t, ...poolConfig } = options;
    this.pool = new pg.Pool(poolConfig);
    this.target = describeTarget(poolConfig);
    this.stats = new PoolStatsRecorder(name, this.pool);
    // Idle clients whose connection dies emit 'error' on the pool, which
    // removes them; without a listener the process would crash.
    this.pool.on('error', (error) => this.warn(`an idle connection failed (${error.message}) and was removed`));
  }

  /** Number of clients lent out by this module and not yet handed back. */
  get leasedCount(): number {
    return this.leases.size;
  }

  async acquire(): Promise<ConnectionLease> {
    if (this.closing) throw new PoolClosedError(this.name);
    const waitStarted = performance.now();
    const client = await this.pool.connect().catch((error: unknown) => this.stats.acquireFailed(error));
    const lease = new ConnectionLease(this, client);
    this.stats.recordAcquired(lease.acquiredAt - waitStarted);
    this.leases.add(lease);
    return lease;
  }

  /** Borrows a client for `fn` alone, like `pool.query` does for one query. */
  async withLease<T>(fn: (lease: ConnectionLease) => Promise<T>): Promise<T> {
    const lease = await this.acquire();
    try {
      return await fn(lease);
    } finally {
      lease.release();
    }
  }

  /** @internal Called by a lease once its client is back in the pool (or destroyed). */
  leaseEnded(lease: ConnectionLease): void {
    if (this.leases.delete(lease)) this.stats.recordReleased(performance.now() - lease.acquiredAt);
  }

  /** `SELECT 1` at startup, retried `retryAttempts` times `retryDelay` ms apart. */
  async checkConnection(): Promise<void> {
    const retries = this.options.retryAttempts ?? DEFAULT_RETRY_ATTEMPTS;
    const retryDelay = this.options.retryDelay ?? DEFAULT_RETRY_DELAY_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.pool.query('SELECT 1');
        return;
      } catch (error) {
        const reason = this.redact(error instanceof Error ? error.message || error.name : String(error));
        if (attempt > retries) {
          const code = (error as { code?: unknown }).code;
          throw new DatabaseUnreachableError(this.name, this.target, reason, typeof code === 'string' ? code : undefined, attempt);
        }
        this.warn(`cannot connect to ${this.target} (${reason}); retrying (${attempt}/${retries}) in ${retryDelay} ms`);
        await delay(retryDelay);
      }
    }
  }

  /**
   * Stops lending, waits up to `drainTimeoutMillis` for lent clients to come
   * back, closes the connections of those that did not, then ends the pool.
   */
  close(): Promise<void> {
    this.closing ??= this.drainAndEnd();
    return this.closing;
  }

  private async drainAndEnd(): Promise<void> {
    const ended = this.pool.end();
    if (this.leases.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = this.options.drainTimeoutMillis ?? DEFAULT_DRAIN_TIMEOUT_MS;
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, timeout, true)));
      const drained = await Promise.race([ended.then(() => false), timedOut]);
      clearTimeout(timer);
      if (drained) {
        this.warn(`${this.leases.size} connection(s) still checked out after ${timeout} ms; closing them`);
        const reason = new PoolError(`datasource "${this.name}" shut down`);
        for (const lease of [...this.leases]) lease.destroy(reason);
      }
    }
    await ended;
  }

  warn(message: string): void {
    this.logger.warn(`Datasource "${this.name}": ${this.redact(message)}`);
  }

  private redact(text: string): string {
    return redactSecrets(text, this.options);
  }
}
