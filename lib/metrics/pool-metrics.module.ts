import { Inject, Injectable, Module, type DynamicModule, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { register, type Metric, type Registry, type RegistryContentType } from 'prom-client';
import { PoolStatsService } from '../datasource/pool-stats.service.js';
import { createPoolMetrics } from './pool-metrics.js';

/** Options of `PoolMetricsModule.forRoot`. */
export interface PoolMetricsModuleOptions {
  /** Registry to add the pool metrics to (Prometheus or OpenMetrics). Default: prom-client's global `register`. */
  registry?: Registry<RegistryContentType>;
}

const POOL_METRICS_OPTIONS = Symbol('PoolMetricsOptions');

/** Adds the metrics to the registry when the application starts and takes them out when it stops. */
@Injectable()
class PoolMetricsRegistration implements OnModuleInit, OnModuleDestroy {
  private readonly registry: Registry<RegistryContentType>;
  private readonly metrics: Array<{ name: string; metric: Metric }>;

  constructor(@Inject(POOL_METRICS_OPTIONS) options: PoolMetricsModuleOptions, stats: PoolStatsService) {
    this.registry = options.registry ?? register;
    this.metrics = createPoolMetrics(() => stats.all()).map((metric) => ({ name: metric.name, metric: metric.asMetric() }));
  }

  onModuleInit(): void {
    for (const { metric } of this.metrics) this.registry.registerMetric(metric);
  }

  onModuleDestroy(): void {
    // Under the name registered with: an OpenMetrics scrape renames counters in place.
    for (const { name, metric } of this.metrics) {
      if (this.registry.getSingleMetric(name) === metric) this.registry.removeSingleMetric(name);
    }
  }
}

/**
 * Prometheus metrics of every datasource of the application and of its
 * replicas' pools, read from the pools at each scrape. Needs `prom-client`; import it from
 * `nestjs-pg-pool/metrics`.
 */
@Module({})
export class PoolMetricsModule {
  /**
   * Adds the `pg_pool_*` metrics, labelled by datasource (or replica pool), to the registry when
   * the application starts, and takes them out when it stops.
   */
  static forRoot(options: PoolMetricsModuleOptions = {}): DynamicModule {
    return {
      module: PoolMetricsModule,
      providers: [{ provide: POOL_METRICS_OPTIONS, useValue: options }, PoolMetricsRegistration],
    };
  }
}
