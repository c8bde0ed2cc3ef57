import type { DurationDistribution, PoolStats } from '../datasource/pool-stats.js';
import { ScrapedMetric, type Sample } from './scraped-metric.js';

type Value = (stats: PoolStats) => number;

/**
 * The pool metrics, named after HikariCP's (`hikaricp_connections`, …), with
 * a `datasource` label. `pg_pool_acquire_seconds_count` is the number of
 * connections lent, `pg_pool_usage_seconds_count` the number released.
 */
export function createPoolMetrics(readStats: () => PoolStats[]): ScrapedMetric[] {
  const perDatasource = (value: Value) => (): Sample[] =>
    readStats().map((stats) => ({ labels: { datasource: stats.datasource }, value: value(stats) }));
  const gauge = (name: string, help: string, value: Value): ScrapedMetric => new ScrapedMetric(name, help, 'gauge', perDatasource(value));
  const counter = (name: string, help: string, value: Value): ScrapedMetric =>
    new ScrapedMetric(name, help, 'counter', perDatasource(value));
  const histogram = (name: string, help: string, distribution: (stats: PoolStats) => DurationDistribution): ScrapedMetric =>
    new ScrapedMetric(name, help, 'histogram', () => readStats().flatMap((stats) => histogramSamples(name, stats.datasource, distribution(stats))));

  return [
    new ScrapedMetric('pg_pool_connections', 'Open connections, by state: idle in the pool or active (checked out)', 'gauge', () =>
      readStats().flatMap(({ datasource, idle, inUse }) => [
        { labels: { datasource, state: 'idle' }, value: idle },
        { labels: { datasource, state: 'active' }, value: inUse },
      ]),
    ),
    gauge('pg_pool_connections_pending', 'Requests waiting for a connection', (stats) => stats.waiting),
    gauge('pg_pool_connections_max', 'Maximum number of connections of the pool', (stats) => stats.max),
    gauge('pg_pool_connections_min', 'Minimum number of connections of the pool', (stats) => stats.min),
    counter('pg_pool_connections_created_total', 'Connections opened', (stats) => stats.created),
    counter('pg_pool_connections_destroyed_total', 'Connections closed', (stats) => stats.destroyed),
    counter('pg_pool_timeouts_total', 'Requests for a connection that gave up waiting', (stats) => stats.acquireTimeouts),
    counter('pg_pool_errors_total', 'Connections that failed to open or broke', (stats) => stats.errors),
    histogram('pg_pool_acquire_seconds', 'Time spent waiting for a connection', (stats) => stats.acquireWait),
    histogram('pg_pool_usage_seconds', 'Time connections stayed checked out', (stats) => stats.holdTime),
  ];
}

function histogramSamples(name: string, datasource: string, distribution: DurationDistribution): Sample[] {
  const buckets = distribution.buckets.map(({ le, count }) => ({ labels: { datasource, le }, value: count, metricName: `${name}_bucket` }));
  return [
    ...buckets,
    { labels: { datasource, le: '+Inf' }, value: distribution.count, metricName: `${name}_bucket` },
    { labels: { datasource }, value: distribution.sum, metricName: `${name}_sum` },
    { labels: { datasource }, value: distribution.count, metricName: `${name}_count` },
  ];
}
