import { Injectable } from '@nestjs/common';
import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';
import { DatasourceRegistry } from './datasource.registry.js';
import type { PoolStats } from './pool-stats.js';

/**
 * Reads the statistics of the application's datasources, live: each call
 * returns what the pools hold at that moment and the counters so far.
 */
@Injectable()
export class PoolStatsService {
  /** @internal The module provides it: inject it rather than constructing it. */
  constructor(private readonly registry: DatasourceRegistry) {}

  /**
   * Statistics of one datasource (default `'default'`) or of one replica pool
   * (`'default (replica 1)'`); throws `DatasourceNotFoundError` for an unknown name.
   */
  get(name: string = DEFAULT_DATASOURCE_NAME): PoolStats {
    return this.registry.getPool(name).stats.snapshot();
  }

  /**
   * Statistics of every pool, in registration order: each datasource followed
   * by its replicas (those with `replicaOf` set).
   */
  all(): PoolStats[] {
    return this.registry.allPools().map((pool) => pool.stats.snapshot());
  }
}
