import type { Attributes, BatchObservableResult, Histogram, Meter, Observable } from '@opentelemetry/api';
import type { Datasource } from '../datasource/datasource.js';
import type { DatasourceRegistry } from '../datasource/datasource.registry.js';
import { connectionTarget } from '../datasource/describe-target.js';
import { POOL_STATS_BUCKETS, type PoolStats, type PoolStatsObserver } from '../datasource/pool-stats.js';

// The names of OpenTelemetry's semantic conventions for database client
// connection pools (db.client.connection.*); a test checks them against
// @opentelemetry/semantic-conventions, which the module does not load.
const POOL_NAME = 'db.client.connection.pool.name';
const STATE = 'db.client.connection.state';

/** A figure read from the pool at each collection: one point per datasource, or one per state. */
interface Gauge {
  name: string;
  kind: 'upDownCounter' | 'counter';
  unit: string;
  description: string;
  points(stats: PoolStats): Array<[value: number, attributes?: Attributes]>;
}

const GAUGES: Gauge[] = [
  {
    name: 'db.client.connection.count',
    kind: 'upDownCounter',
    unit: '{connection}',
    description: 'The number of connections that are currently in the state described by the state attribute.',
    points: (stats) => [
      [stats.idle, { [STATE]: 'idle' }],
      [stats.inUse, { [STATE]: 'used' }],
    ],
  },
  {
    name: 'db.client.connection.idle.max',
    kind: 'upDownCounter',
    unit: '{connection}',
    description: 'The maximum number of idle open connections allowed (node-postgres keeps up to max idle).',
    points: (stats) => [[stats.max]],
  },
  {
    name: 'db.client.connection.idle.min',
    kind: 'upDownCounter',
    unit: '{connection}',
    description: 'The minimum number of idle open connections allowed.',
    points: (stats) => [[stats.min]],
  },
  {
    name: 'db.client.connection.max',
    kind: 'upDownCounter',
    unit: '{connection}',
    description: 'The maximum number of open connections allowed.',
    points: (stats) => [[stats.max]],
  },
  {
    name: 'db.client.connection.pending_requests',
    kind: 'upDownCounter',
    unit: '{request}',
    description: 'The number of current pending requests for an open connection.',
    points: (stats) => [[stats.waiting]],
  },
  {
    name: 'db.client.connection.timeouts',
    kind: 'counter',
    unit: '{timeout}',
    description: 'The number of connection timeouts that have occurred trying to obtain a connection from the pool.',
    points: (stats) => [[stats.acquireTimeouts]],
  },
];

/** The durations recorded as they happen, in seconds, by the event of PoolStatsObserver that feeds each. */
const DURATIONS: Record<keyof PoolStatsObserver, { name: string; description: string }> = {
  connected: { name: 'db.client.connection.create_time', description: 'The time it took to create a new connection.' },
  acquired: { name: 'db.client.connection.wait_time', description: 'The time it took to obtain an open connection from the pool.' },
  released: { name: 'db.client.connection.use_time', description: 'The time between borrowing a connection and returning it to the pool.' },
};

/**
 * Reports the pools of `registry`'s datasources and their replicas through `meter` under the
 * semantic conventions' names: gauges read from the pools at each
 * collection, and the create, wait and use histograms recorded as each
 * connection, checkout and release happens. Returns the function that
 * stops it.
 */
export function reportPools(meter: Meter, registry: DatasourceRegistry): () => void {
  const gauges = GAUGES.map((gauge): [Gauge, Observable] => {
    const options = { unit: gauge.unit, description: gauge.description };
    return [gauge, gauge.kind === 'counter' ? meter.createObservableCounter(gauge.name, options) : meter.createObservableUpDownCounter(gauge.name, options)];
  });
  const observables = gauges.map(([, observable]) => observable);
  const collect = (result: BatchObservableResult): void => {
    for (const datasource of registry.allPools()) {
      const stats = datasource.stats.snapshot();
      const attributes = attributesOf(datasource);
      for (const [gauge, observable] of gauges) {
        for (const [value, more] of gauge.points(stats)) result.observe(observable, value, { ...attributes, ...more });
      }
    }
  };
  meter.addBatchObservableCallback(collect, observables);

  const advice = { explicitBucketBoundaries: [...POOL_STATS_BUCKETS] };
  const histogram = (event: keyof PoolStatsObserver): Histogram => {
    const { name, description } = DURATIONS[event];
    return meter.createHistogram(name, { unit: 's', description, advice });
  };
  const createTime = histogram('connected');
  const waitTime = histogram('acquired');
  const useTime = histogram('released');
  const stopRecording = registry.watchEach((datasource) => {
    const attributes = attributesOf(datasource);
    return datasource.stats.observe({
      connected: (milliseconds) => createTime.record(milliseconds / 1000, attributes),
      acquired: (milliseconds) => waitTime.record(milliseconds / 1000, attributes),
      released: (milliseconds) => useTime.record(milliseconds / 1000, attributes),
    });
  });

  return () => {
    meter.removeBatchObservableCallback(collect, observables);
    stopRecording();
  };
}

/** The pool's name and, where the configuration names them, the server and database (never the user or password). */
function attributesOf(datasource: Datasource): Attributes {
  const target = connectionTarget(datasource.options);
  if (!target) return { [POOL_NAME]: datasource.name };
  return { [POOL_NAME]: datasource.name, 'server.address': target.host, 'server.port': target.port, 'db.namespace': target.database };
}
