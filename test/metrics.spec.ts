import { Controller, Get, Header, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { register, Registry } from 'prom-client';
import supertest from 'supertest';
import { PoolMetricsModule } from '../lib/metrics/index.js';
import { getConnectionToken, PoolConnection, PoolModule, PoolStatsService, POOL_STATS_BUCKETS } from '../lib/index.js';
import { connectionUrl } from './support/connection-url.js';
import { createTestDatabase, serverPassword, type TestDatabase } from './support/database.js';
import { holdClient } from './support/hold-client.js';
import { createHttpApp } from './support/http-app.js';
import { parseExposition } from './support/prometheus.js';

// The server's password when it asks for one; under trust auth a made-up one, which it ignores. Neither may show.
const SECRET = serverPassword() ?? 'Sup3r-Secret-Passw0rd';

describe('Prometheus metrics', () => {
  const registry = new Registry();
  let main: TestDatabase;
  let reports: TestDatabase;
  let app: INestApplication;

  @Controller('metrics')
  class MetricsController {
    @Get()
    @Header('Content-Type', Registry.PROMETHEUS_CONTENT_TYPE)
    metrics(): Promise<string> {
      return registry.metrics();
    }
  }

  beforeAll(async () => {
    [main, reports] = await Promise.all([createTestDatabase('metrics'), createTestDatabase('metrics_reports')]);
    app = await createHttpApp(
      {
        imports: [
          // A replica pool: a second pool to the same server, with a max of its own.
          PoolModule.forRoot({ ...main.options, max: 3, replicas: [{ ...main.options, max: 1 }] }),
          // A password in the URL, which must appear nowhere.
          PoolModule.forRoot({ name: 'reports', connectionString: connectionUrl({ ...reports.options, password: SECRET }), max: 2 }),
          PoolMetricsModule.forRoot({ registry }),
        ],
        controllers: [MetricsController],
      },
      'express',
    );
  });

  afterAll(async () => {
    await app?.close();
    await Promise.all([main?.drop(), reports?.drop()]);
  });

  const scrape = async (): Promise<Map<string, number>> => {
    const response = await supertest(app.getHttpServer()).get('/metrics').expect(200);
    expect(response.headers['content-type']).toBe(Registry.PROMETHEUS_CONTENT_TYPE);
    expect(response.text).not.toContain(SECRET);
    return parseExposition(response.text);
  };

  it('exposes the HikariCP-style families for every datasource and replica pool', async () => {
    const samples = await scrape();
    for (const datasource of ['default', 'default (replica 1)', 'reports']) {
      for (const series of [
        `pg_pool_connections{datasource="${datasource}",state="idle"}`,
        `pg_pool_connections{datasource="${datasource}",state="active"}`,
        `pg_pool_connections_pending{datasource="${datasource}"}`,
        `pg_pool_connections_min{datasource="${datasource}"}`,
        `pg_pool_connections_created_total{datasource="${datasource}"}`,
        `pg_pool_connections_destroyed_total{datasource="${datasource}"}`,
        `pg_pool_timeouts_total{datasource="${datasource}"}`,
        `pg_pool_errors_total{datasource="${datasource}"}`,
        `pg_pool_acquire_seconds_bucket{datasource="${datasource}",le="+Inf"}`,
        `pg_pool_acquire_seconds_sum{datasource="${datasource}"}`,
        `pg_pool_usage_seconds_count{datasource="${datasource}"}`,
      ]) {
        expect(samples.has(series)).toBe(true);
      }
    }
    expect(samples.get('pg_pool_connections_max{datasource="default"}')).toBe(3);
    expect(samples.get('pg_pool_connections_max{datasource="reports"}')).toBe(2);
    expect(samples.get('pg_pool_connections_max{datasource="default (replica 1)"}')).toBe(1);
  });

  it("shows a replica pool's connections and loans under its own name, apart from the primary's", async () => {
    const replica = 'default (replica 1)';
    const loans = (samples: Map<string, number>, datasource: string): number => samples.get(`pg_pool_usage_seconds_count{datasource="${datasource}"}`)!;
    const before = await scrape();
    const held = await holdClient(app.get<PoolConnection>(getConnectionToken('default', { replica: true })));
    const during = await scrape();
    expect(during.get(`pg_pool_connections{datasource="${replica}",state="active"}`)).toBe(1);
    expect(during.get('pg_pool_connections{datasource="default",state="active"}')).toBe(0);
    await held.release();

    const after = await scrape();
    expect({ replica: loans(after, replica) - loans(before, replica), primary: loans(after, 'default') - loans(before, 'default') }).toEqual({ replica: 1, primary: 0 });
    const stats = app.get(PoolStatsService).get(replica);
    expect(after.get(`pg_pool_acquire_seconds_count{datasource="${replica}"}`)).toBe(stats.acquired);
    expect(after.get(`pg_pool_usage_seconds_count{datasource="${replica}"}`)).toBe(stats.released);
  });

  it('reads the pools live: a held connection shows as active, and every loan in the histograms', async () => {
    const held = await holdClient(app.get<PoolConnection>(getConnectionToken()));
    const during = await scrape();
    expect(during.get('pg_pool_connections{datasource="default",state="active"}')).toBe(1);
    expect(during.get('pg_pool_connections{datasource="reports",state="active"}')).toBe(0);

    await held.release();
    const after = await scrape();
    expect(after.get('pg_pool_connections{datasource="default",state="active"}')).toBe(0);
    expect(after.get('pg_pool_connections{datasource="default",state="idle"}')).toBeGreaterThanOrEqual(1);
    const stats = app.get(PoolStatsService).get();
    expect(after.get('pg_pool_acquire_seconds_count{datasource="default"}')).toBe(stats.acquired);
    expect(after.get('pg_pool_usage_seconds_count{datasource="default"}')).toBe(stats.released);
    const buckets = POOL_STATS_BUCKETS.map((le) => after.get(`pg_pool_usage_seconds_bucket{datasource="default",le="${le}"}`));
    expect(buckets).toEqual(stats.holdTime.buckets.map((bucket) => bucket.count));
    expect(after.get('pg_pool_usage_seconds_bucket{datasource="default",le="+Inf"}')).toBe(stats.released);
  });

  it('names counters the OpenMetrics way in an OpenMetrics registry', async () => {
    const openMetrics = new Registry<typeof Registry.OPENMETRICS_CONTENT_TYPE>();
    openMetrics.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot(main.options), PoolMetricsModule.forRoot({ registry: openMetrics })],
    }).compile();
    const context = await moduleRef.init();
    try {
      const text = await openMetrics.metrics();
      expect(text).toContain('# TYPE pg_pool_timeouts counter');
      expect(text).toContain('pg_pool_timeouts_total{datasource="default"} 0');
      expect(text).not.toContain('_total_total');
    } finally {
      await context.close();
    }
    expect(openMetrics.getMetricsAsArray()).toHaveLength(0);
  });

  it("uses prom-client's global registry by default, and leaves it when the application stops", async () => {
    const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot(main.options), PoolMetricsModule.forRoot()] }).compile();
    const context = await moduleRef.init();
    expect(register.getSingleMetric('pg_pool_connections')).toBeDefined();
    await context.close();
    expect(register.getSingleMetric('pg_pool_connections')).toBeUndefined();
  });
});
