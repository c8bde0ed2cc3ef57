import { Controller, Get, type DynamicModule, type INestApplication } from '@nestjs/common';
import { HealthCheckService, TerminusModule, type HealthIndicatorFunction } from '@nestjs/terminus';
import type { Pool } from 'pg';
import { DatabaseError } from 'pg';
import supertest from 'supertest';
import { PoolHealthIndicator } from '../lib/health/index.js';
import { describeFailure } from '../lib/health/describe-failure.js';
import { getConnectionToken, getPoolToken, PoolClosedError, PoolConnection, PoolExhaustedError, PoolModule, PoolStatsService } from '../lib/index.js';
import { connectionUrl, serverAddress } from './support/connection-url.js';
import { createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { holdClients } from './support/hold-client.js';
import { createHttpApp } from './support/http-app.js';
import { TcpProxy } from './support/tcp-proxy.js';
import { HealthModule } from './examples/health.js';

/** What GET /health checks; each test sets its own list. */
class HealthChecks {
  list: HealthIndicatorFunction[] = [];
}

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly checks: HealthChecks,
  ) {}

  @Get()
  check(): Promise<unknown> {
    return this.health.check(this.checks.list);
  }
}

/** An Express app with `pools`, Terminus and GET /health, which runs the checks set on `checks.list`. */
async function createHealthApp(...pools: DynamicModule[]): Promise<{ app: INestApplication; checks: HealthChecks; indicator: PoolHealthIndicator }> {
  const checks = new HealthChecks();
  const app = await createHttpApp(
    {
      imports: [...pools, TerminusModule.forRoot({ logger: false })],
      controllers: [HealthController],
      providers: [PoolHealthIndicator, { provide: HealthChecks, useValue: checks }],
    },
    'express',
  );
  return { app, checks, indicator: app.get(PoolHealthIndicator) };
}

/** Resolves once `pool` has emitted `event` `times` times. */
function poolEvents(pool: Pool, event: 'release' | 'remove', times: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const listener = (): void => {
      if (++seen < times) return;
      pool.off(event, listener);
      resolve();
    };
    pool.on(event, listener);
  });
}

describe('PoolHealthIndicator', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let app: INestApplication;
  let indicator: PoolHealthIndicator;
  let checks: HealthChecks;
  let stats: PoolStatsService;
  let connection: PoolConnection;

  beforeAll(async () => {
    db = await createTestDatabase('health');
    proxy = await TcpProxy.start(serverAddress());
    ({ app, checks, indicator } = await createHealthApp(
      PoolModule.forRoot({ ...db.options, max: 2 }),
      // The same database behind a proxy that can stall or cut its connections.
      PoolModule.forRoot({ name: 'proxied', connectionString: connectionUrl(db.options, proxy.port), max: 1 }),
    ));
    stats = app.get(PoolStatsService);
    connection = app.get(getConnectionToken());
  });

  afterAll(async () => {
    await app?.close();
    await proxy?.close();
    await db?.drop();
  });

  const getHealth = (): supertest.Test => supertest(app.getHttpServer()).get('/health');

  it('answers up for a reachable database, with the response time and the pool figures', async () => {
    checks.list = [() => indicator.pingCheck('database'), () => indicator.poolCheck('database_pool')];
    const { body } = await getHealth().expect(200);
    expect(body.status).toBe('ok');
    expect(body.details.database).toEqual({ status: 'up', responseTime: expect.any(Number) });
    expect(body.details.database_pool).toEqual({ status: 'up', total: 1, idle: 1, inUse: 0, waiting: 0, max: 2, utilization: 0 });
    expect(stats.get()).toMatchObject({ inUse: 0, waiting: 0 });
  });

  it('gives up a ping still waiting for a new connection at its timeout, and hands that client back once it opens', async () => {
    const pool = app.get<Pool>(getPoolToken('proxied'));
    await indicator.pingCheck('proxied', { name: 'proxied' }); // its one connection, idle
    const idleGone = poolEvents(pool, 'remove', 1);
    proxy.cut('hold-responses');
    await idleGone;
    const result = await indicator.pingCheck('proxied', { name: 'proxied', timeout: 200 });
    expect(result.proxied).toMatchObject({ status: 'down', message: 'timeout of 200ms exceeded' });
    expect(stats.get('proxied')).toMatchObject({ total: 1, idle: 0 });

    const released = poolEvents(pool, 'release', 1);
    proxy.restore();
    await released;
    expect(stats.get('proxied')).toMatchObject({ total: 1, idle: 1, inUse: 0, waiting: 0 });
  });

  it('pings a saturated pool on one connection of its own, shared by the pings meanwhile and closed after', async () => {
    const proxiedConnection = app.get<PoolConnection>(getConnectionToken('proxied'));
    const held = await holdClients(proxiedConnection, 1);
    try {
      const before = stats.get('proxied');
      const { accepted, openCount } = proxy;
      const [one, two] = await Promise.all([
        indicator.pingCheck('one', { name: 'proxied', timeout: 5000 }),
        indicator.pingCheck('two', { name: 'proxied', timeout: 5000 }),
      ]);
      expect([one.one.status, two.two.status]).toEqual(['up', 'up']);
      expect(proxy.accepted - accepted).toBe(1);
      // Nothing borrowed from the pool, nothing queued in it.
      expect(stats.get('proxied')).toMatchObject({ inUse: 1, waiting: 0, acquired: before.acquired });
      await waitFor(async () => (proxy.openCount === openCount ? true : undefined), "the ping's connection to close");

      // A server that does not answer it is down, and the connection is closed once the ping gave up.
      proxy.holdResponses();
      const silent = await indicator.pingCheck('proxied', { name: 'proxied', timeout: 200 });
      expect(silent.proxied).toMatchObject({ status: 'down', message: 'timeout of 200ms exceeded' });
      await waitFor(async () => (proxy.openCount === openCount ? true : undefined), "the silent ping's connection to close");
    } finally {
      proxy.restore();
      await held.release();
    }
    expect(stats.get('proxied')).toMatchObject({ inUse: 0, waiting: 0 });
  });

  it('cancels its query on timeout, then hands the client back once the server answers', async () => {
    const pool = app.get<Pool>(getPoolToken('proxied'));
    await indicator.pingCheck('proxied', { name: 'proxied' }); // an open, idle connection
    proxy.holdResponses();
    const cancelRequest = proxy.nextCancelRequest();
    const result = await indicator.pingCheck('proxied', { name: 'proxied', timeout: 200 });
    expect(result.proxied).toMatchObject({ status: 'down', message: 'timeout of 200ms exceeded' });
    await cancelRequest;
    expect(stats.get('proxied')).toMatchObject({ inUse: 1, waiting: 0 });

    const released = poolEvents(pool, 'release', 1);
    proxy.restore();
    await released;
    expect(stats.get('proxied')).toMatchObject({ inUse: 0, idle: 1 });
    expect((await indicator.pingCheck('proxied', { name: 'proxied' })).proxied.status).toBe('up');
  });

  it('reuses a result for cacheFor milliseconds instead of pinging again', async () => {
    const first = await indicator.pingCheck('cached', { cacheFor: 60_000 });
    const acquired = stats.get().acquired;
    const second = await indicator.pingCheck('cached', { cacheFor: 60_000 });
    expect(first.cached.status).toBe('up');
    expect(second.cached).toMatchObject({ status: 'up', cachedResponse: true });
    expect(stats.get().acquired).toBe(acquired);
  });

  it('poolCheck: degraded with HTTP 200 past maxUtilization, down with HTTP 503 past maxWaiting', async () => {
    checks.list = [() => indicator.poolCheck('database_pool', { maxUtilization: 0.4, maxWaiting: 1 })];
    const one = await holdClients(connection, 1);
    const degraded = await getHealth().expect(200);
    expect(degraded.body.status).toBe('degraded');
    expect(degraded.body.info.database_pool).toMatchObject({
      status: 'degraded',
      inUse: 1,
      utilization: 0.5,
      message: '1 of 2 connections in use (more than 40%)',
    });

    const another = await holdClients(connection, 1);
    const waiters = [connection.query('SELECT 1'), connection.query('SELECT 1')];
    const down = await getHealth().expect(503);
    expect(down.body.error.database_pool).toMatchObject({
      status: 'down',
      waiting: 2,
      message: '2 requests waiting for a connection (more than 1)',
    });
    await Promise.all([one.release(), another.release(), ...waiters]);
    await getHealth().expect(200);
  });

  it('poolCheck defaults: degraded above 90% in use, down when more requests wait than the pool has connections', async () => {
    const both = await holdClients(connection, 2);
    expect(indicator.poolCheck('pool').pool).toMatchObject({ status: 'degraded', utilization: 1 });
    const waiters = [1, 2, 3].map(() => connection.query('SELECT 1'));
    expect(indicator.poolCheck('pool').pool).toMatchObject({ status: 'down', waiting: 3 });
    await Promise.all([both.release(), ...waiters]);
    expect(() => indicator.poolCheck('pool', { maxUtilization: 90 })).toThrow(RangeError);
  });

  it('answers "connection refused" once the database port is closed', async () => {
    const pool = app.get<Pool>(getPoolToken('proxied'));
    const idleConnectionGone = poolEvents(pool, 'remove', 1);
    await proxy.close();
    await idleConnectionGone;
    const result = await indicator.pingCheck('proxied', { name: 'proxied' });
    expect(result.proxied).toMatchObject({ status: 'down', message: 'connection refused' });
  });
});

describe('PoolHealthIndicator with a read replica', () => {
  const REPLICA = 'default (replica 1)';
  let db: TestDatabase;
  let app: INestApplication;
  let indicator: PoolHealthIndicator;
  let checks: HealthChecks;
  let replicaReads: PoolConnection;

  beforeAll(async () => {
    db = await createTestDatabase('health_replica');
    // The replica is a second pool to the same server, of one connection.
    ({ app, checks, indicator } = await createHealthApp(PoolModule.forRoot({ ...db.options, max: 2, replicas: [{ ...db.options, max: 1 }] })));
    replicaReads = app.get(getConnectionToken('default', { replica: true }));
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const getHealth = (): supertest.Test => supertest(app.getHttpServer()).get('/health');
  const idleReplica = { name: REPLICA, status: 'up', total: 1, idle: 1, inUse: 0, waiting: 0, max: 1, utilization: 0 };

  it("poolCheck lists the datasource's replica pools with their figures", async () => {
    checks.list = [() => indicator.poolCheck('database_pool')];
    const { body } = await getHealth().expect(200);
    expect(body.details.database_pool).toEqual({ status: 'up', total: 1, idle: 1, inUse: 0, waiting: 0, max: 2, utilization: 0, replicas: [idleReplica] });
  });

  it('poolCheck: a saturated replica pool makes the check degraded (HTTP 200), never down; checked by its name, it is down', async () => {
    const held = await holdClients(replicaReads, 1);
    checks.list = [() => indicator.poolCheck('database_pool', { maxWaiting: 0 })];
    const saturated = await getHealth().expect(200);
    expect(saturated.body.status).toBe('degraded');
    expect(saturated.body.info.database_pool).toMatchObject({
      status: 'degraded',
      inUse: 0,
      utilization: 0,
      replicas: [{ ...idleReplica, status: 'degraded', idle: 0, inUse: 1, utilization: 1 }],
      message: `${REPLICA}: 1 of 1 connections in use (more than 90%)`,
    });

    // A read queued on the replica (it would go to the primary after the replica's acquire timeout).
    const queued = replicaReads.query('SELECT 1');
    const waiting = await getHealth().expect(200);
    expect(waiting.body.info.database_pool).toMatchObject({
      status: 'degraded',
      waiting: 0,
      replicas: [{ name: REPLICA, status: 'down', waiting: 1 }],
      message: `${REPLICA}: 1 requests waiting for a connection (more than 0)`,
    });
    checks.list = [() => indicator.poolCheck('replica_pool', { name: REPLICA, maxWaiting: 0 })];
    const alone = await getHealth().expect(503);
    expect(alone.body.error.replica_pool).toMatchObject({ status: 'down', waiting: 1, max: 1 });
    expect(alone.body.error.replica_pool).not.toHaveProperty('replicas');

    await held.release();
    await queued;
    checks.list = [() => indicator.poolCheck('database_pool')];
    expect((await getHealth().expect(200)).body.details.database_pool.replicas).toEqual([idleReplica]);
  });

  it('replicaCheck keeps a replica whose pool is saturated in rotation: busy is not down', async () => {
    const held = await holdClients(replicaReads, 1);
    try {
      const { replicas } = await indicator.replicaCheck('replicas');
      expect(replicas).toMatchObject({ status: 'up', replicas: [{ name: REPLICA, up: true }] });
    } finally {
      await held.release();
    }
  });
});

describe("the docs' health endpoint with a saturated pool", () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase('health_example');
    app = await createHttpApp(
      { imports: [PoolModule.forRoot({ ...db.options, max: 2 }), PoolModule.forRoot({ ...db.options, name: 'reports', max: 1 }), HealthModule] },
      'express',
    );
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('answers 200 degraded within its ping timeout: the ping up on a connection of its own, the pool degraded', async () => {
    const stats = app.get(PoolStatsService);
    const held = await holdClients(app.get<PoolConnection>(getConnectionToken()), 2);
    try {
      const before = stats.get();
      const startedAt = performance.now();
      const { body } = await supertest(app.getHttpServer()).get('/health').expect(200);
      // The example's ping timeout: a ping queued behind the held clients would answer 503 then.
      expect(performance.now() - startedAt).toBeLessThan(1000);
      expect(body).toMatchObject({
        status: 'degraded',
        info: {
          database: { status: 'up', responseTime: expect.any(Number) },
          database_pool: { status: 'degraded', inUse: 2, waiting: 0, max: 2, utilization: 1, message: '2 of 2 connections in use (more than 90%)' },
          reports: { status: 'up' },
        },
        error: {},
      });
      expect(stats.get()).toMatchObject({ inUse: 2, waiting: 0, acquired: before.acquired });
    } finally {
      await held.release();
    }
  });
});

describe('describeFailure', () => {
  const SECRET = 'Sup3r-Secret';
  const withCode = (message: string, code: string): Error => Object.assign(new Error(message), { code });

  it.each<[string, unknown, string]>([
    ['authentication', withCode(`password authentication failed for user "app" (${SECRET})`, '28P01'), 'authentication failed'],
    ['a refused connection', withCode(`connect ECONNREFUSED 10.0.0.1:5432 ${SECRET}`, 'ECONNREFUSED'), 'connection refused'],
    ['an exhausted pool', new PoolExhaustedError('default', 1000, { total: 2, idle: 0, waiting: 1, max: 2 }), 'pool exhausted'],
    ['a lost connection', new Error('Connection terminated unexpectedly'), 'connection lost'],
    ['a shutdown', new PoolClosedError('default'), 'datasource shutting down'],
    ['another server error', Object.assign(new DatabaseError(SECRET, 0, 'error'), { code: '42501' }), 'database error 42501'],
    ['anything else', new Error(`postgres://app:${SECRET}@db/app is unreachable`), 'connection failed'],
  ])('%s', (_case, error, reason) => {
    expect(describeFailure(error)).toBe(reason);
  });
});
