import type { INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { MeterProvider, MetricReader, type MetricData } from '@opentelemetry/sdk-metrics';
import { ATTR_DB_NAMESPACE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT } from '@opentelemetry/semantic-conventions';
import {
  ATTR_DB_CLIENT_CONNECTION_POOL_NAME,
  ATTR_DB_CLIENT_CONNECTION_STATE,
  DB_CLIENT_CONNECTION_STATE_VALUE_IDLE,
  DB_CLIENT_CONNECTION_STATE_VALUE_USED,
  METRIC_DB_CLIENT_CONNECTION_COUNT,
  METRIC_DB_CLIENT_CONNECTION_CREATE_TIME,
  METRIC_DB_CLIENT_CONNECTION_IDLE_MAX,
  METRIC_DB_CLIENT_CONNECTION_IDLE_MIN,
  METRIC_DB_CLIENT_CONNECTION_MAX,
  METRIC_DB_CLIENT_CONNECTION_PENDING_REQUESTS,
  METRIC_DB_CLIENT_CONNECTION_TIMEOUTS,
  METRIC_DB_CLIENT_CONNECTION_USE_TIME,
  METRIC_DB_CLIENT_CONNECTION_WAIT_TIME,
} from '@opentelemetry/semantic-conventions/incubating';
import { PoolTelemetryModule } from '../lib/otel/index.js';
import { getConnectionToken, PoolConnection, PoolExhaustedError, PoolModule, PoolStatsService } from '../lib/index.js';
import { connectionUrl } from './support/connection-url.js';
import { createTestDatabase, serverPassword, type TestDatabase } from './support/database.js';
import { holdClient } from './support/hold-client.js';

/** A reader the test collects from when it chooses. */
class CollectingReader extends MetricReader {
  protected async onShutdown(): Promise<void> {}
  protected async onForceFlush(): Promise<void> {}
}

// The units the semantic conventions give these metrics (the constants carry names only).
const UNITS: Record<string, string> = {
  [METRIC_DB_CLIENT_CONNECTION_COUNT]: '{connection}',
  [METRIC_DB_CLIENT_CONNECTION_IDLE_MAX]: '{connection}',
  [METRIC_DB_CLIENT_CONNECTION_IDLE_MIN]: '{connection}',
  [METRIC_DB_CLIENT_CONNECTION_MAX]: '{connection}',
  [METRIC_DB_CLIENT_CONNECTION_PENDING_REQUESTS]: '{request}',
  [METRIC_DB_CLIENT_CONNECTION_TIMEOUTS]: '{timeout}',
  [METRIC_DB_CLIENT_CONNECTION_CREATE_TIME]: 's',
  [METRIC_DB_CLIENT_CONNECTION_WAIT_TIME]: 's',
  [METRIC_DB_CLIENT_CONNECTION_USE_TIME]: 's',
};

describe('OpenTelemetry pool metrics (nestjs-pg-pool/otel)', () => {
  let main: TestDatabase;
  let reports: TestDatabase;
  let context: INestApplicationContext;
  let provider: MeterProvider;
  const reader = new CollectingReader();
  // The server's password when it asks for one; under trust auth a made-up one, which it ignores. It must not show.
  const secret = serverPassword() ?? 'Sup3r-Secret-Passw0rd';

  beforeAll(async () => {
    [main, reports] = await Promise.all([createTestDatabase('otel'), createTestDatabase('otel_reports')]);
    provider = new MeterProvider({ readers: [reader] });
    const moduleRef = await Test.createTestingModule({
      imports: [
        // A replica pool: a second pool to the same server, with a max of its own.
        PoolModule.forRoot({ ...main.options, max: 3, replicas: [{ ...main.options, max: 2 }] }),
        PoolModule.forRoot({ name: 'reports', connectionString: connectionUrl({ ...reports.options, password: secret }), max: 1, connectionTimeoutMillis: 200 }),
        PoolTelemetryModule.forRoot({ meterProvider: provider }),
      ],
    }).compile();
    context = await moduleRef.init();
  });

  afterAll(async () => {
    await context?.close();
    await provider?.shutdown();
    await Promise.all([main?.drop(), reports?.drop()]);
  });

  async function collect(): Promise<Map<string, MetricData>> {
    const { resourceMetrics, errors } = await reader.collect();
    expect(errors).toEqual([]);
    const all = resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics);
    return new Map(all.map((metric) => [metric.descriptor.name, metric]));
  }

  /** The value of `name` for the point whose attributes include `attributes`. */
  function value(metrics: Map<string, MetricData>, name: string, attributes: Record<string, string>): unknown {
    const point = metrics.get(name)?.dataPoints.find((p) => Object.entries(attributes).every(([k, v]) => p.attributes[k] === v));
    return point?.value;
  }

  it('reports every metric under its semantic-convention name and unit, keyed by pool, server and database', async () => {
    // A checkout and a hand-back, so that the histograms have a point.
    await (await holdClient(context.get<PoolConnection>(getConnectionToken()))).release();
    const metrics = await collect();
    expect([...metrics.keys()].sort()).toEqual(Object.keys(UNITS).sort());
    const { hostname: host, port } = new URL(connectionUrl(main.options));
    for (const [name, unit] of Object.entries(UNITS)) {
      const metric = metrics.get(name)!;
      expect(metric.descriptor.unit).toBe(unit);
      const defaults = metric.dataPoints.filter((p) => p.attributes[ATTR_DB_CLIENT_CONNECTION_POOL_NAME] === 'default');
      expect(defaults.length).toBeGreaterThan(0);
      for (const point of defaults) {
        expect(point.attributes).toMatchObject({
          [ATTR_SERVER_ADDRESS]: host,
          [ATTR_SERVER_PORT]: Number(port || 5432),
          [ATTR_DB_NAMESPACE]: main.name,
        });
      }
    }
    const states = metrics.get(METRIC_DB_CLIENT_CONNECTION_COUNT)!.dataPoints.map((p) => p.attributes[ATTR_DB_CLIENT_CONNECTION_STATE]);
    expect(new Set(states)).toEqual(new Set([DB_CLIENT_CONNECTION_STATE_VALUE_IDLE, DB_CLIENT_CONNECTION_STATE_VALUE_USED]));
    expect(JSON.stringify([...metrics.values()])).not.toContain(secret);
  });

  it('reads the pools at each collection and records every new connection, checkout and hand-back', async () => {
    const pool = { [ATTR_DB_CLIENT_CONNECTION_POOL_NAME]: 'default' };
    const used = { ...pool, [ATTR_DB_CLIENT_CONNECTION_STATE]: DB_CLIENT_CONNECTION_STATE_VALUE_USED };
    const held = await holdClient(context.get<PoolConnection>(getConnectionToken()));
    const during = await collect();
    expect(value(during, METRIC_DB_CLIENT_CONNECTION_COUNT, used)).toBe(1);
    expect(value(during, METRIC_DB_CLIENT_CONNECTION_MAX, pool)).toBe(3);
    expect(value(during, METRIC_DB_CLIENT_CONNECTION_IDLE_MAX, pool)).toBe(3);
    expect(value(during, METRIC_DB_CLIENT_CONNECTION_IDLE_MIN, pool)).toBe(0);
    expect(value(during, METRIC_DB_CLIENT_CONNECTION_PENDING_REQUESTS, pool)).toBe(0);
    await held.release();

    const after = await collect();
    expect(value(after, METRIC_DB_CLIENT_CONNECTION_COUNT, used)).toBe(0);
    const stats = context.get(PoolStatsService).get();
    expect((value(after, METRIC_DB_CLIENT_CONNECTION_WAIT_TIME, pool) as { count: number }).count).toBe(stats.acquired);
    expect((value(after, METRIC_DB_CLIENT_CONNECTION_USE_TIME, pool) as { count: number }).count).toBe(stats.released);
    const created = value(after, METRIC_DB_CLIENT_CONNECTION_CREATE_TIME, pool) as { count: number; sum: number };
    expect(created.count).toBe(stats.created);
    expect(created.sum).toBeGreaterThan(0);
  });

  it("reports a replica pool under its own pool name, apart from the primary's, from its first connection on", async () => {
    const replica = 'default (replica 1)';
    const replicaPool = { [ATTR_DB_CLIENT_CONNECTION_POOL_NAME]: replica };
    const used = (pool: string) => ({ [ATTR_DB_CLIENT_CONNECTION_POOL_NAME]: pool, [ATTR_DB_CLIENT_CONNECTION_STATE]: DB_CLIENT_CONNECTION_STATE_VALUE_USED });
    const held = await holdClient(context.get<PoolConnection>(getConnectionToken('default', { replica: true })));
    const during = await collect();
    expect(value(during, METRIC_DB_CLIENT_CONNECTION_COUNT, used(replica))).toBe(1);
    expect(value(during, METRIC_DB_CLIENT_CONNECTION_COUNT, used('default'))).toBe(0);
    expect(value(during, METRIC_DB_CLIENT_CONNECTION_MAX, replicaPool)).toBe(2);
    await held.release();

    const after = await collect();
    const stats = context.get(PoolStatsService);
    const count = (name: string, pool: string) => (value(after, name, { [ATTR_DB_CLIENT_CONNECTION_POOL_NAME]: pool }) as { count: number }).count;
    expect(count(METRIC_DB_CLIENT_CONNECTION_USE_TIME, replica)).toBe(stats.get(replica).released);
    // Its startup check's connection too: the replica was watched before it connected.
    expect(count(METRIC_DB_CLIENT_CONNECTION_CREATE_TIME, replica)).toBe(stats.get(replica).created);
    expect(stats.get(replica).created).toBeGreaterThanOrEqual(1);
  });

  it('counts a request that gave up waiting for a connection as a timeout', async () => {
    const connection = context.get<PoolConnection>(getConnectionToken('reports'));
    const held = await holdClient(connection);
    try {
      await expect(holdClient(connection)).rejects.toBeInstanceOf(PoolExhaustedError);
    } finally {
      await held.release();
    }
    const metrics = await collect();
    expect(value(metrics, METRIC_DB_CLIENT_CONNECTION_TIMEOUTS, { [ATTR_DB_CLIENT_CONNECTION_POOL_NAME]: 'reports' })).toBe(1);
  });
});
