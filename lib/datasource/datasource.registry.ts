import {
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import type { PoolModuleOptions } from '../interfaces/pool-module-options.interface.js';
import { DEFAULT_REPLICA_RETRY_MS, POOL_LOGGER_CONTEXT } from '../pool.constants.js';
import { DatasourceNotFoundError, DuplicateDatasourceError } from '../pool.errors.js';
import { ReplicaSet } from '../replication/replica-set.js';
import { Datasource } from './datasource.js';
import { validatePoolOptions } from './pool-options.js';

/**
 * The datasources of one application. Checks them all at startup (so a bad
 * one fails the bootstrap, and the good ones are closed with it) and ends
 * them all at shutdown.
 */
@Injectable()
export class DatasourceRegistry implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger(POOL_LOGGER_CONTEXT);
  private readonly datasources = new Map<string, Datasource>();
  /** What watchEach() calls for each datasource created from now on. */
  private readonly watchers = new Set<(datasource: Datasource) => void>();

  /** Validates the options and creates the datasource; no connection is opened yet. */
  create(name: string, options: PoolModuleOptions): Datasource {
    validatePoolOptions(name, options);
    if (this.datasources.has(name)) throw new DuplicateDatasourceError(name);
    const datasource = new Datasource(name, options, this.logger, this.createReplicaSet(name, options));
    this.datasources.set(name, datasource);
    for (const watch of this.watchers) watch(datasource);
    return datasource;
  }

  /**
   * Calls `watch` for every datasource, those there now and those created
   * later, until the returned function is called, which also calls what each
   * `watch` returned. Called as providers are created, it sees every
   * datasource before its first connection (the check of onModuleInit()).
   */
  watchEach(watch: (datasource: Datasource) => () => void): () => void {
    const stops = this.all().map(watch);
    const watcher = (datasource: Datasource): void => void stops.push(watch(datasource));
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

  names(): string[] {
    return [...this.datasources.keys()];
  }

  all(): Datasource[] {
    return [...this.datasources.values()];
  }

  async onModuleInit(): Promise<void> {
    const checks = await Promise.allSettled(this.all().map((datasource) => datasource.checkConnection()));
    const failed = checks.find((check) => check.status === 'rejected');
    if (failed) {
      await this.closeAll();
      throw failed.reason;
    }
    await Promise.all(this.all().map((datasource) => datasource.replicas?.check()));
  }

  private createReplicaSet(name: string, options: PoolModuleOptions): ReplicaSet | undefined {
    if (!options.replicas?.length) return undefined;
    // A replica takes the primary's pool settings, not where it connects.
    const { replicas, replicaRetryMillis, connectionString: _c, host: _h, port: _p, min: _m, ...inherited } = options;
    const replicaDatasources = replicas.map((replica, index) => {
      const replicaName = `${name} (replica ${index + 1})`;
      // An unreachable replica is skipped, not waited for: no startup retries.
      const replicaOptions: PoolModuleOptions = { ...inherited, retryAttempts: 0, ...replica, name: replicaName };
      validatePoolOptions(replicaName, replicaOptions);
      return new Datasource(replicaName, replicaOptions, this.logger);
    });
    return new ReplicaSet(replicaDatasources, replicaRetryMillis ?? DEFAULT_REPLICA_RETRY_MS);
  }

  /**
   * Shutdown starts here, before Nest closes the HTTP server: that close
   * waits for every open request, so a request stuck in a query would hold
   * it (and the process) past drainTimeoutMillis. Draining first lets the
   * timeout end such a request; requests arriving meanwhile get 503.
   */
  async beforeApplicationShutdown(): Promise<void> {
    await this.closeAll();
  }

  /** Nothing left to do after beforeApplicationShutdown (closing is idempotent), unless that hook was skipped. */
  async onApplicationShutdown(): Promise<void> {
    await this.closeAll();
  }

  /** Ends every datasource; also for startup checks outside the registry that fail the bootstrap. */
  async closeAll(): Promise<void> {
    await Promise.all(this.all().map((datasource) => datasource.close()));
  }
}
