import type { Attributes, BatchObservableResult, Histogram, Meter, Observable } from '@opentelemetry/api';
import type { Datasource } from '../datasource/datasource.js';
import type { DatasourceRegistry } from '../datasource/datasource.registry.js';
import { connectionTarget } from '../datasource/describe-target.js';
import { POOL_STATS_BUCKETS } from '../datasource/pool-stats.js';

// The names of OpenTelemetry's semantic conventions for database client
// connection pools (db.client.connection.*); a test checks them against
// @opentelemetry/semantic-conventions, which the module does not load.
const POOL_NAME = 'db.client.connection.pool.name';
const STATE = 'db.client.connection.state';

/**
 * Reports the pools of `registry`'s datasources through `meter` under the semantic
 * conventions' names: gauges read from the pools at each collection, and the
 * create, wait and use histograms recorded as each connection, checkout and
 * hand-back happens.
 * Returns the function that stops it.
 */
export function reportPools(meter: Meter, registry: DatasourceRegistry): () => void {
  const count = meter.createObservableUpDownCounter('db.client.connection.count', {
    unit: '{connection}',
    description: 'The number of connections that are currently in the state described by the state attribute.',
  });
  const idleMax = meter.createObservableUpDownCounter('db.client.connection.idle.max', {
    unit: '{connection}',
    description: 'The maximum number of idle open connections allowed (node-postgres keeps up to max idle).',
  });
  const idleMin = meter.createObservableUpDownCounter('db.client.connection.idle.min', {
    unit: '{connection}',
    description: 'The minimum number of idle open connections allowed.',
  });
  const max = meter.createObservableUpDownCounter('db.client.connection.max', {
    unit: '{connection}',
    description: 'The maximum number of open connections allowed.',
  });
  const pending = meter.createObservableUpDownCounter('db.client.connection.pending_requests', {
    unit: '{request}',
    description: 'The number of current pending requests for an open connection.',
  });
  const timeouts = meter.createObservableCounter('db.client.connection.timeouts', {
    unit: '{timeout}',
    description: 'The number of connection timeouts that have occurred trying to obtain a connection from the pool.',
  });
  const advice = { explicitBucketBoundaries: [...POOL_STATS_BUCKETS] };
  const createTime = meter.createHistogram('db.client.connection.create_time', {
    unit: 's',
    description: 'The time it took to create a new connection.',
    advice,
  });
  const waitTime = meter.createHistogram('db.client.connection.wait_time', {
    unit: 's',
    description: 'The time it took to obtain an open connection from the pool.',
    advice,
  });
  const useTime = meter.createHistogram('db.client.connection.use_time', {
    unit: 's',
    description: 'The time between borrowing a connection and returning it to the pool.',
    advice,
  });

  const observables: Observable[] = [count, idleMax, idleMin, max, pending, timeouts];
  const collect = (result: BatchObservableResult): void => {
    for (const datasource of registry.all()) {
      const stats = datasource.stats.snapshot();
      const attributes = attributesOf(datasource);
      result.observe(count, stats.idle, { ...attributes, [STATE]: 'idle' });
      result.observe(count, stats.inUse, { ...attributes, [STATE]: 'used' });
      result.observe(idleMax, stats.max, attributes);
      result.observe(idleMin, stats.min, attributes);
      result.observe(max, stats.max, attributes);
      result.observe(pending, stats.waiting, attributes);
      result.observe(timeouts, stats.acquireTimeouts, attributes);
    }
  };
  meter.addBatchObservableCallback(collect, observables);
  const stopRecording = registry.watchEach((datasource) => recordDurations(datasource, { createTime, waitTime, useTime }));
  return () => {
    meter.removeBatchObservableCallback(collect, observables);
    stopRecording();
  };
}

function recordDurations(datasource: Datasource, { createTime, waitTime, useTime }: Record<'createTime' | 'waitTime' | 'useTime', Histogram>): () => void {
  const attributes = attributesOf(datasource);
  return datasource.stats.observe({
    connected: (milliseconds) => createTime.record(milliseconds / 1000, attributes),
    acquired: (milliseconds) => waitTime.record(milliseconds / 1000, attributes),
    released: (milliseconds) => useTime.record(milliseconds / 1000, attributes),
  });
}

/** The pool's name and, where the configuration names them, the server and database (never the user or password). */
function attributesOf(datasource: Datasource): Attributes {
  const target = connectionTarget(datasource.options);
  if (!target) return { [POOL_NAME]: datasource.name };
  return { [POOL_NAME]: datasource.name, 'server.address': target.host, 'server.port': target.port, 'db.namespace': target.database };
}
