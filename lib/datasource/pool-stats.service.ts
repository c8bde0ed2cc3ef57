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

  /** Statistics of one datasource (default `'default'`); throws `DatasourceNotFoundError` for an unknown name. */
  get(name: string = DEFAULT_DATASOURCE_NAME): PoolStats {
    return this.registry.get(name).stats.snapshot();
  }

  /** Statistics of every datasource, in registration order. */
  all(): PoolStats[] {
    return this.registry.all().map((datasource) => datasource.stats.snapshot());
  }
}
