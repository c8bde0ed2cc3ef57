import {
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import type { PoolModuleOptions } from '../interfaces/pool-module-options.interface.js';
import { DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_REPLICA_RETRY_MS, POOL_LOGGER_CONTEXT } from '../pool.constants.js';
import { DatasourceNotFoundError, DuplicateDatasourceError } from '../pool.errors.js';
import { ReplicaSet } from '../replication/replica-set.js';
import { Datasource } from './datasource.js';
import { validatePoolOptions } from './pool-options.js';

/**
 * The datasources of one application. Checks them all at startup (so a bad
 * one fails the bootstrap, and the good ones are closed with it) and ends
 * them all at shutdown. A datasource's replica pools are listed too (for
 * statistics, metrics and health), but its ReplicaSet checks and closes them.
 */
@Injectable()
export class DatasourceRegistry implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger(POOL_LOGGER_CONTEXT);
  private readonly datasources = new Map<string, Datasource>();
  /** Every pool by name: the datasources and their replicas, which share one namespace. */
  private readonly pools = new Map<string, Datasource>();
  /** The replicas of each datasource that has some. */
  private readonly replicaSets = new Map<Datasource, ReplicaSet>();
  /** What watchEach() calls for each pool created from now on. */
  private readonly watchers = new Set<(datasource: Datasource) => void>();
  /** What shutdown waits for before the pools close; see drainFirst(). */
  private readonly drains = new Set<(drainUntil: number) => Promise<void>>();

  /** Validates the options and creates the datasource; no connection is opened yet. */
  create(name: string, options: PoolModuleOptions): Datasource {
    validatePoolOptions(name, options);
    // A replica's name taken by another datasource would merge two pools' series in the metrics.
    const names = [name, ...(options.replicas ?? []).map((_replica, index) => replicaName(name, index))];
    const taken = names.find((poolName) => this.pools.has(poolName));
    if (taken !== undefined) throw new DuplicateDatasourceError(taken);
    const datasource = new Datasource(name, options, this.logger);
    const replicas = this.createReplicaSet(name, options);
    if (replicas) this.replicaSets.set(datasource, replicas);
    this.datasources.set(name, datasource);
    const pools = [datasource, ...(replicas?.replicas ?? [])];
    for (const pool of pools) this.pools.set(pool.name, pool);
    for (const watch of this.watchers) pools.forEach(watch);
    return datasource;
  }

  /**
   * Calls `watch` for every pool (datasources and their replicas), those
   * there now and those created later, until the returned function is
   * called, which also calls what each `watch` returned. Called as providers
   * are created, it sees every pool before its first connection (the check
   * of onModuleInit()).
   */
  watchEach(watch: (pool: Datasource) => () => void): () => void {
    const stops = this.allPools().map(watch);
    const watcher = (pool: Datasource): void => void stops.push(watch(pool));
    this.watchers.add(watcher);
    return () => {
      this.watchers.delete(watcher);
      for (const stop of stops) stop();
    };
  }

  get(name: string): Datasource {
    const datasource = this.datasources.get(name);
    if (!datasource) throw new DatasourceNotFoundError(name, this.names());
    return datasource;
  }

  /** A datasource or a replica pool, by name (`default (replica 1)`). */
  getPool(name: string): Datasource {
    const pool = this.pools.get(name);
    if (!pool) throw new DatasourceNotFoundError(name, [...this.pools.keys()]);
    return pool;
  }

  /** The replicas of `datasource`, if it has some. */
  replicasOf(datasource: Datasource): ReplicaSet | undefined {
    return this.replicaSets.get(datasource);
  }

  names(): string[] {
    return [...this.datasources.keys()];
  }

  /** The datasources, without their replicas. */
  all(): Datasource[] {
    return [...this.datasources.values()];
  }

  /** Every pool: each datasource followed by its replicas. */
  allPools(): Datasource[] {
    return [...this.pools.values()];
  }

  async onModuleInit(): Promise<void> {
    const checks = await Promise.allSettled(this.all().map((datasource) => datasource.checkConnection()));
    const failed = checks.find((check) => check.status === 'rejected');
    if (failed) {
      await this.closeAll();
      throw failed.reason;
    }
    await Promise.all([...this.replicaSets.values()].map((replicas) => replicas.check()));
  }

  private createReplicaSet(name: string, options: PoolModuleOptions): ReplicaSet | undefined {
    if (!options.replicas?.length) return undefined;
    // A replica takes the primary's pool settings, not where it connects nor which server it wants there;
    // its startup check never fails the boot, so it has no boot to go on without it.
    const {
      replicas,
      replicaRetryMillis,
      connectionString: _c,
      host: _h,
      port: _p,
      min: _m,
      targetSessionAttrs: _target,
      loadBalanceHosts: _loadBalance,
      bootWithoutDatabase: _bootWithout,
      ...inherited
    } = options;
    const replicaDatasources = replicas.map((replica, index) => {
      const poolName = replicaName(name, index);
      // An unreachable replica is skipped, not waited for: no startup retries.
      const replicaOptions: PoolModuleOptions = { ...inherited, retryAttempts: 0, ...replica, name: poolName };
      validatePoolOptions(poolName, replicaOptions);
      return new Datasource(poolName, replicaOptions, this.logger, name);
    });
    return new ReplicaSet(replicaDatasources, replicaRetryMillis ?? DEFAULT_REPLICA_RETRY_MS);
  }

  /**
   * Has shutdown wait for `drain` before the pools close: the HTTP server's
   * requests in flight, which still need their connections. `drain` gets the
   * `performance.now()` time by which it must resolve.
   */
  drainFirst(drain: (drainUntil: number) => Promise<void>): void {
    this.drains.add(drain);
  }

  /**
   * Shutdown, after onModuleDestroy and before Nest closes the HTTP server
   * (which waits for every open connection). The drains go first (the HTTP
   * server stops accepting and its requests in flight finish, the pools
   * still lending), then the pools close: work still holding a client
   * (un-awaited writes, listeners) has what is left of drainTimeoutMillis,
   * counted from here, and a query still running then is cancelled. So a
   * request stuck in a query cannot hold the process past the timeout.
   */
  async beforeApplicationShutdown(): Promise<void> {
    const since = performance.now();
    const drainMillis = Math.max(0, ...this.all().map((datasource) => datasource.options.drainTimeoutMillis ?? DEFAULT_DRAIN_TIMEOUT_MS));
    await Promise.all([...this.drains].map((drain) => drain(since + drainMillis)));
    await this.closeAll(since);
  }

  /**
   * Nest closes the HTTP server between the two hooks; closing is idempotent,
   * so this does nothing unless beforeApplicationShutdown was skipped.
   */
  async onApplicationShutdown(): Promise<void> {
    await this.closeAll();
  }

  /**
   * Ends every datasource, their drain timeouts counted from `since`; also for
   * startup checks outside the registry that fail the bootstrap.
   */
  async closeAll(since?: number): Promise<void> {
    await Promise.all([
      ...this.all().map((datasource) => datasource.close(since)),
      ...[...this.replicaSets.values()].map((replicas) => replicas.close(since)),
    ]);
  }
}

/** The pool name of a datasource's replica, as logs, statistics, metrics and health show it. */
function replicaName(datasource: string, index: number): string {
  return `${datasource} (replica ${index + 1})`;
}
