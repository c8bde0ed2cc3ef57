import { Controller, Get, type INestApplication, type LoggerService } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import type { AddressInfo } from 'node:net';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { PoolHealthIndicator } from '../lib/health/index.js';
import { DatabaseUnreachableError, getPoolToken, InjectConnection, PoolConnection, PoolModule, type PoolModuleOptions } from '../lib/index.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { waitFor } from './support/database.js';
import { ADAPTERS, type AdapterName } from './support/http-app.js';
import { PgCluster } from './support/pg-cluster.js';

// An application that starts before its database (Compose, Kubernetes) with
// `bootWithoutDatabase`: it listens, says down and answers 503 meanwhile,
// serves once the server answers (one log line), and closes cleanly while it
// still waits. Without the option the boot fails as it always did.

@Controller()
class AppController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly health: HealthCheckService,
    private readonly pools: PoolHealthIndicator,
  ) {}

  @Get('one')
  async one(): Promise<number> {
    return (await this.connection.query<{ one: number }>('SELECT 1 AS one')).rows[0].one;
  }

  @Get('health')
  check(): Promise<unknown> {
    return this.health.check([() => this.pools.pingCheck('database')]);
  }
}

interface Started {
  app: INestApplication;
  pool: Pool;
  http: () => supertest.Agent;
}

/** The application, listening on a free port of 127.0.0.1 once its bootstrap has ended. */
async function start(adapter: AdapterName, options: PoolModuleOptions, logger: LoggerService): Promise<Started> {
  const moduleRef = await Test.createTestingModule({
    imports: [PoolModule.forRoot(options), TerminusModule.forRoot({ logger: false })],
    controllers: [AppController],
    providers: [PoolHealthIndicator],
  }).compile();
  const app = moduleRef.createNestApplication(adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(), { logger });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, pool: app.get<Pool>(getPoolToken()), http: () => supertest(`http://127.0.0.1:${port}`) };
}

/** The outage lines of the log: what it says of the datasource's state. */
function outageLines(logger: CapturingLogger): string[] {
  return logger.matching(/unreachable|fails authentication|serves again/);
}

let cluster: PgCluster;
let running = true;

async function stopCluster(): Promise<void> {
  if (running) await cluster.stop('fast');
  running = false;
}

async function startCluster(): Promise<void> {
  if (!running) await cluster.start();
  running = true;
}

beforeAll(async () => {
  cluster = await PgCluster.create();
});

afterAll(async () => {
  await cluster?.destroy();
});

// max 50 exceeds what the cluster accepts (max_connections 40): the budget
// warning shows that the startup check's other duties ran once it answered.
const waiting = (): PoolModuleOptions => ({
  ...cluster.options(),
  bootWithoutDatabase: true,
  retryAttempts: 0,
  retryDelay: 50,
  min: 3,
  max: 50,
  connectionTimeoutMillis: 2000,
});

describe.each(ADAPTERS)('an application that boots before its database (%s)', (adapter) => {
  it('listens, says down and answers 503 meanwhile, then serves once the server is up, with one log line', async () => {
    await stopCluster();
    const logger = new CapturingLogger();
    const s = await start(adapter, waiting(), logger);
    try {
      expect(outageLines(logger)).toEqual([
        expect.stringMatching(
          /^Datasource "default": is unreachable at startup; the application starts without it and connects in the background, connections are refused with 503 until it answers: Cannot connect datasource "default" to postgres@127\.0\.0\.1:\d+\/postgres after 1 attempt\(s\): .*ECONNREFUSED/,
        ),
      ]);

      const health = await s.http().get('/health');
      expect(health.status).toBe(503);
      expect(health.body.error).toEqual({ database: { status: 'down', message: 'connection refused', responseTime: expect.any(Number) } });
      const refused = await s.http().get('/one');
      expect(refused.status).toBe(503);
      expect(refused.headers['retry-after']).toBe('1');
      expect(refused.body).toEqual({ statusCode: 503, message: 'Service Unavailable' });

      await startCluster();
      // The background retries find it: nothing asks for a connection meanwhile.
      const served = await logger.next(/serves again/, 0);
      expect(served).toMatch(/^Datasource "default": serves again after \d+ ms unreachable since startup; 2 connection request\(s\) were refused meanwhile$/);
      await s.http().get('/one').expect(200, '1');
      const healthy = await s.http().get('/health');
      expect(healthy.status).toBe(200);
      expect(healthy.body.info).toEqual({ database: { status: 'up', responseTime: expect.any(Number) } });
      // Then the rest of the startup check: the connection budget, and the min connections opened.
      await logger.next(/max \(50\) exceeds the \d+ connections the server accepts/, 0);
      await waitFor(async () => (s.pool.totalCount >= 3 ? true : undefined), 'the min 3 connections to be opened');
      expect(outageLines(logger)).toHaveLength(2);
      expect(logger.errors).toHaveLength(1);
    } finally {
      await s.app.close();
    }
  });

  it('serves at once when a request finds the server up before the next retry is due', async () => {
    await stopCluster();
    const logger = new CapturingLogger();
    // The first background retry 20 s away: only the request can find the server.
    const s = await start(adapter, { ...waiting(), retryDelay: 20_000 }, logger);
    try {
      await startCluster();
      await s.http().get('/one').expect(200, '1');
      expect(outageLines(logger)).toEqual([
        expect.stringMatching(/is unreachable at startup/),
        expect.stringMatching(/^Datasource "default": serves again after \d+ ms unreachable since startup; 0 connection request\(s\) were refused meanwhile$/),
      ]);
      // The request's connection woke the retries: the min connections follow at once, not in 20 s.
      await waitFor(async () => (s.pool.totalCount >= 3 ? true : undefined), 'the min 3 connections to be opened', 10_000);
    } finally {
      await s.app.close();
    }
  });
});

describe('closing while the database is still awaited', () => {
  it('stops the background retries and leaves no timer or connection behind', async () => {
    await stopCluster();
    const timers = (): number => process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length;
    const before = timers();
    const logger = new CapturingLogger();
    const s = await start('express', waiting(), logger);
    // A retry is pending: its timer is one of the process' own.
    expect(timers()).toBeGreaterThan(before);
    await s.app.close();
    expect(s.pool.ended).toBe(true);
    expect(s.pool.totalCount).toBe(0);
    expect(timers()).toBe(before);
    expect(logger.errors).toHaveLength(1);
  });
});

describe('without bootWithoutDatabase', () => {
  it('fails the boot with DatabaseUnreachableError after its retries, as always', async () => {
    await stopCluster();
    const logger = new CapturingLogger();
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...cluster.options(), retryAttempts: 1, retryDelay: 10 })],
    })
      .setLogger(logger)
      .compile();
    const boot = moduleRef.init();
    await expect(boot).rejects.toBeInstanceOf(DatabaseUnreachableError);
    await expect(boot).rejects.toMatchObject({ code: 'ECONNREFUSED', attempts: 2 });
    await moduleRef.close();
    expect(outageLines(logger)).toEqual([]);
  });
});
