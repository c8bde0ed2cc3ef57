import { Controller, Get, type DynamicModule, type INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { PoolHealthIndicator } from '../lib/health/index.js';
import { getConnectionToken, getPoolToken, InjectConnection, PoolConnection, PoolModule } from '../lib/index.js';
import { UnavailableDetailModule } from './examples/unavailable-detail-filter.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { serverAddress } from './support/connection-url.js';
import { adminQuery, createTestDatabase, type TestDatabase } from './support/database.js';
import { holdClient } from './support/hold-client.js';
import { ADAPTERS, type AdapterName } from './support/http-app.js';
import { TcpProxy } from './support/tcp-proxy.js';

// A 503 tells the HTTP client to come back later and nothing about the
// server: not its host, port or user, not the driver's reason. The detail
// goes to the log, once per outage, and to a filter of the application's own.

const SECRET = `Answers-Secret-${randomBytes(4).toString('hex')}`;
const ROLE = `npp_answers_${randomBytes(4).toString('hex')}`;

@Controller()
class QueryController {
  constructor(
    @InjectConnection() private readonly main: PoolConnection,
    @InjectConnection('remote') private readonly remote: PoolConnection,
    private readonly health: HealthCheckService,
    private readonly pools: PoolHealthIndicator,
  ) {}

  @Get('main')
  async fromMain(): Promise<number> {
    return (await this.main.query<{ one: number }>('SELECT 1 AS one')).rows[0].one;
  }

  @Get('remote')
  async fromRemote(): Promise<number> {
    return (await this.remote.query<{ one: number }>('SELECT 1 AS one')).rows[0].one;
  }

  @Get('health')
  check(): Promise<unknown> {
    return this.health.check([() => this.pools.pingCheck('remote', { name: 'remote' })]);
  }
}

interface Started {
  app: INestApplication;
  logger: CapturingLogger;
  proxy: TcpProxy;
  http: () => supertest.Agent;
  /** What the answers must not hold: where 'remote' connects, as whom, and why it cannot. */
  serverDetails: string[];
}

let db: TestDatabase;

/**
 * An app with 'default' (one client, acquire timeout 300 ms) and 'remote',
 * which started through a proxy that is then closed: a dead port, whose
 * connections are refused.
 */
async function start(adapter: AdapterName, imports: Array<DynamicModule | (new () => unknown)> = []): Promise<Started> {
  const proxy = await TcpProxy.start(serverAddress());
  const logger = new CapturingLogger();
  const moduleRef = await Test.createTestingModule({
    imports: [
      PoolModule.forRoot({ ...db.options, max: 1, connectionTimeoutMillis: 300 }),
      PoolModule.forRoot({ name: 'remote', host: '127.0.0.1', port: proxy.port, user: ROLE, password: SECRET, database: db.name, connectionTimeoutMillis: 300 }),
      TerminusModule.forRoot({ logger: false }),
      ...imports,
    ],
    controllers: [QueryController],
    providers: [PoolHealthIndicator],
  }).compile();
  const app = moduleRef.createNestApplication(adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(), { logger });
  await app.listen(0, '127.0.0.1');
  const remotePool = app.get<Pool>(getPoolToken('remote'));
  const startupConnectionGone = new Promise((resolve) => remotePool.once('remove', resolve));
  await proxy.close();
  await startupConnectionGone;
  const { port } = app.getHttpServer().address() as AddressInfo;
  const serverDetails = ['127.0.0.1', String(proxy.port), ROLE, 'ECONNREFUSED', SECRET];
  return { app, logger, proxy, http: () => supertest(`http://127.0.0.1:${port}`), serverDetails };
}

/** The answer's body and headers as one text to search; not the date and the body's hash, whose digits could match a port. */
function answerText(response: supertest.Response): string {
  const { date: _date, etag: _etag, ...headers } = response.headers as Record<string, unknown>;
  return JSON.stringify(headers) + response.text;
}

beforeAll(async () => {
  db = await createTestDatabase('answers');
  await adminQuery(`CREATE ROLE ${ROLE} LOGIN PASSWORD '${SECRET}'`);
});

afterAll(async () => {
  await db?.drop();
  await adminQuery(`DROP ROLE IF EXISTS ${ROLE}`);
});

describe.each(ADAPTERS)('the answer to a request the pool cannot serve (%s)', (adapter) => {
  let s: Started;
  beforeAll(async () => (s = await start(adapter)));
  afterAll(() => s?.app.close());

  it('a dead port: 503 with Retry-After and the status text alone; the detail logged once', async () => {
    const since = s.logger.messages.length;
    for (let request = 0; request < 3; request++) {
      const response = await s.http().get('/remote');
      expect(response.status).toBe(503);
      expect(response.headers['retry-after']).toBe('1');
      expect(response.body).toEqual({ statusCode: 503, message: 'Service Unavailable' });
      for (const detail of s.serverDetails) expect(answerText(response)).not.toContain(detail);
    }
    const logged = s.logger.messages.slice(since);
    expect(logged).toEqual([
      expect.stringMatching(
        new RegExp(`^Datasource "remote": is unreachable; .*: Cannot connect datasource "remote" to ${ROLE}@127\\.0\\.0\\.1:${s.proxy.port}/${db.name} .*ECONNREFUSED`),
      ),
    ]);
    expect(logged.join('\n')).not.toContain(SECRET);
  });

  it('an exhausted pool: 503 with Retry-After and the status text alone; the counts logged once', async () => {
    const since = s.logger.messages.length;
    const held = await holdClient(s.app.get<PoolConnection>(getConnectionToken()));
    try {
      for (let request = 0; request < 2; request++) {
        const response = await s.http().get('/main');
        expect(response.status).toBe(503);
        expect(response.headers['retry-after']).toBe('1');
        expect(response.body).toEqual({ statusCode: 503, message: 'Service Unavailable' });
      }
    } finally {
      await held.release();
    }
    await s.http().get('/main').expect(200, '1');
    expect(s.logger.messages.slice(since)).toEqual([
      expect.stringMatching(/^Datasource "default": is exhausted; .*: Datasource "default" is exhausted: all 1 connections stayed busy for \d+ ms/),
      expect.stringMatching(/^Datasource "default": serves again after \d+ ms exhausted; 2 connection request\(s\) were refused meanwhile/),
    ]);
  });

  it('a failing health check: 503 from Terminus with a short reason and nothing of the server', async () => {
    const response = await s.http().get('/health');
    expect(response.status).toBe(503);
    expect(response.body.error).toEqual({ remote: { status: 'down', message: 'connection refused', responseTime: expect.any(Number) } });
    for (const detail of s.serverDetails) expect(answerText(response)).not.toContain(detail);
  });
});

describe.each(ADAPTERS)("an application's own exception filter (%s)", (adapter) => {
  let s: Started;
  beforeAll(async () => (s = await start(adapter, [UnavailableDetailModule])));
  afterAll(() => s?.app.close());

  it('answers the detail it chooses to show, with the Retry-After the module set', async () => {
    const response = await s.http().get('/remote');
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('1');
    expect(response.body).toEqual({
      statusCode: 503,
      error: 'DatabaseUnreachableError',
      message: expect.stringMatching(
        new RegExp(`^Cannot connect datasource "remote" to ${ROLE}@127\\.0\\.0\\.1:${s.proxy.port}/${db.name} after 1 attempt\\(s\\): .*connect ECONNREFUSED`),
      ),
    });
    expect(response.text).not.toContain(SECRET);
  });
});
