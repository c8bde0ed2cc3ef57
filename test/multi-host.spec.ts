import { Controller, Post, type INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import { TerminusModule } from '@nestjs/terminus';
import type { Pool, PoolClient } from 'pg';
import { createServer, type Socket } from 'node:net';
import supertest from 'supertest';
import { PoolHealthIndicator } from '../lib/health/index.js';
import {
  ConnectionFailedError,
  ConnectionScope,
  DatabaseUnreachableError,
  getConnectionToken,
  getPoolToken,
  InjectConnection,
  InvalidPoolOptionsError,
  PoolConnection,
  PoolModule,
  PoolStatsService,
  type PoolModuleOptions,
} from '../lib/index.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { waitFor } from './support/database.js';
import { freePort } from './support/free-port.js';
import { PgCluster } from './support/pg-cluster.js';
import { whenAvailable } from './support/services.js';

// Several hosts as libpq takes them (target_session_attrs, load_balance_hosts),
// and what the datasource does when its primary stops taking writes: on a
// primary of its own and a streaming standby, promoted during the suite.

const PASSWORD = 'Multi-Host-Secret-5f3a';

@Controller()
class WritesController {
  constructor(@InjectConnection() private readonly db: PoolConnection) {}

  /** Writes a row; answers the port of the server that took it. */
  @Post('write')
  async write(): Promise<number> {
    const { rows } = await this.db.query<{ port: number }>('INSERT INTO items DEFAULT VALUES RETURNING inet_server_port() AS port');
    return rows[0].port;
  }

  @Post('write-in-transaction')
  write_in_transaction(): Promise<number> {
    return this.db.transaction(async (tx) => {
      const { rows } = await tx.query<{ port: number }>('INSERT INTO items DEFAULT VALUES RETURNING inet_server_port() AS port');
      return rows[0].port;
    });
  }
}

interface Started {
  app: INestApplication;
  logger: CapturingLogger;
  pool: Pool;
  connection: PoolConnection;
  http: () => supertest.Agent;
}

const apps: INestApplication[] = [];

async function start(options: PoolModuleOptions): Promise<Started> {
  const logger = new CapturingLogger();
  const moduleRef = await Test.createTestingModule({
    imports: [
      PoolModule.forRoot({ user: 'postgres', database: 'postgres', retryAttempts: 0, connectionTimeoutMillis: 3000, ...options }),
      TerminusModule.forRoot({ logger: false }),
    ],
    controllers: [WritesController],
    providers: [PoolHealthIndicator],
  }).compile();
  const app = moduleRef.createNestApplication(new ExpressAdapter(), { logger });
  apps.push(app);
  await app.init();
  return {
    app,
    logger,
    pool: app.get<Pool>(getPoolToken()),
    connection: app.get<PoolConnection>(getConnectionToken()),
    http: () => supertest(app.getHttpServer()),
  };
}

/** Opens `count` connections at once, answers the server port of each, then releases them. */
async function serverPorts(pool: Pool, count: number): Promise<number[]> {
  const clients = await Promise.all(Array.from({ length: count }, () => pool.connect()));
  try {
    return await Promise.all(clients.map(async (client) => (await client.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0].port));
  } finally {
    for (const client of clients) client.release();
  }
}

describe('several hosts (a primary and its standby)', () => {
  const test = whenAvailable('pg_basebackup', 'several hosts');
  let primary: PgCluster;
  let standby: PgCluster;
  let deadPort: number;
  const host = (cluster: PgCluster | number): string => `127.0.0.1:${typeof cluster === 'number' ? cluster : cluster.port}`;
  const hosts = (...list: Array<PgCluster | number>): string => list.map(host).join(',');

  beforeAll(async () => {
    primary = await PgCluster.create();
    await primary.query('postgres', 'CREATE TABLE items (id serial PRIMARY KEY)');
    standby = await PgCluster.replicaOf(primary);
    await waitFor(async () => ((await standby.query('postgres', "SELECT to_regclass('items') AS t")).rows[0].t ? true : undefined), 'the standby to catch up');
    // Nothing listens there: connections are refused.
    deadPort = await freePort();
  }, 60_000);

  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.close()));
  });

  afterAll(async () => {
    await standby?.destroy();
    await primary?.destroy();
  });

  test('a multi-host connection string boots; read-write skips the standby listed first; connections are counted by host', async () => {
    const url = `postgres://postgres:${PASSWORD}@${hosts(standby, primary)}/postgres?target_session_attrs=read-write&application_name=multi`;
    const { pool, app, logger } = await start({ connectionString: url });
    expect(await serverPorts(pool, 3)).toEqual([primary.port, primary.port, primary.port]);
    const stats = app.get(PoolStatsService).get();
    expect(stats.connectionsByHost).toEqual({ [host(primary)]: 3 });
    expect(app.get(PoolHealthIndicator).poolCheck('db').db).toMatchObject({ status: 'up', total: 3, connectionsByHost: { [host(primary)]: 3 } });
    expect(logger.messages.join('\n')).not.toContain(PASSWORD);
    // The rest of the string still applies.
    const { rows } = await pool.query<{ name: string }>("SELECT current_setting('application_name') AS name");
    expect(rows[0].name).toBe('multi');
  });

  test.each([
    ['read-only', () => [primary, standby], () => standby],
    ['standby', () => [primary, standby], () => standby],
    ['prefer-standby', () => [primary, standby], () => standby],
    ['prefer-standby', () => [deadPort, primary], () => primary],
    ['primary', () => [standby, primary], () => primary],
    ['any', () => [deadPort, standby, primary], () => standby],
  ] as const)('targetSessionAttrs %s lands as libpq would', async (targetSessionAttrs, list, expected) => {
    const { pool } = await start({ host: hosts(...list()), targetSessionAttrs });
    expect(await serverPorts(pool, 2)).toEqual([expected().port, expected().port]);
  });

  test("loadBalanceHosts 'random' spreads connections over the hosts that match", async () => {
    const { pool } = await start({ host: hosts(primary, standby), loadBalanceHosts: 'random', max: 16 });
    const ports = new Set(await serverPorts(pool, 16));
    expect(ports).toEqual(new Set([primary.port, standby.port]));
  });

  test('a host that takes connections and says nothing costs its timeout, then the next host serves', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => void sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const silentPort = (silent.address() as { port: number }).port;
      const { pool } = await start({ host: hosts(silentPort, primary), targetSessionAttrs: 'read-write', connectionTimeoutMillis: 500 });
      expect(await serverPorts(pool, 2)).toEqual([primary.port, primary.port]);
      expect(sockets.size).toBe(1);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('no host matches: the typed error names each host tried and why, without the password; nothing is left open', async () => {
    const url = `postgres://postgres:${PASSWORD}@${hosts(deadPort, primary)}/postgres?target_session_attrs=standby`;
    const failed = await start({ connectionString: url }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failed).toBeInstanceOf(DatabaseUnreachableError);
    const message = (failed as Error).message;
    expect(message).toMatch(
      new RegExp(`found no host matching targetSessionAttrs 'standby': ${host(deadPort)} \\(.*ECONNREFUSED.*\\), ${host(primary)} \\(is a read-write primary\\)`),
    );
    expect(message).not.toContain(PASSWORD);
    await waitFor(async () => ((await primary.sessionCount('postgres')) === 0 ? true : undefined), 'no session left on the primary');
  });

  test('a host list that cannot be read is refused at once', async () => {
    await expect(start({ host: `127.0.0.1:${primary.port},:5432` })).rejects.toThrow(InvalidPoolOptionsError);
    await expect(start({ host: hosts(primary, standby), targetSessionAttrs: 'writable' as never })).rejects.toThrow(/targetSessionAttrs/);
  });

  describe('errors that end a connection close it, never to be reused', () => {
    /** Runs `fail` on a checked-out client of the datasource, then answers whether that client's connection was closed. */
    async function closedAfter(
      fail: (connection: PoolConnection, pid: number) => Promise<unknown>,
    ): Promise<{ error: unknown; removed: boolean; logger: CapturingLogger }> {
      const { pool, connection, logger } = await start({ host: hosts(standby, primary), targetSessionAttrs: 'read-write', max: 1 });
      const removed = new Promise<PoolClient>((resolve) => pool.once('remove', resolve));
      const error = await ConnectionScope.run(async () => {
        const pid = (await connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
        return fail(connection, pid).then(
          () => undefined,
          (failure: unknown) => failure,
        );
      });
      const gone = await Promise.race([removed.then(() => true), new Promise<boolean>((resolve) => setTimeout(resolve, 2000, false))]);
      return { error, removed: gone, logger };
    }

    test('57P01: the backend of a checked-out client is terminated', async () => {
      const { error, removed, logger } = await closedAfter(async (connection, pid) => {
        await primary.query('postgres', 'SELECT pg_terminate_backend($1)', [pid]);
        await connection.query('SELECT 1');
      });
      expect(error).toBeInstanceOf(ConnectionFailedError);
      expect(removed).toBe(true);
      // The log line says which host the connection was on.
      expect(logger.matching(/a checked-out connection failed/)).toEqual([expect.stringContaining(`on ${host(primary)}; it will be closed, not reused`)]);
    });

    test.each(['57P03', '08006'])('%s at ERROR severity: the connection is closed, not reused', async (code) => {
      const { error, removed } = await closedAfter((connection) =>
        connection.query(`DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '${code}'; END $$`),
      );
      expect(error).toBeInstanceOf(ConnectionFailedError);
      expect(((error as ConnectionFailedError).cause as { code?: string }).code).toBe(code);
      expect(removed).toBe(true);
    });
  });

  describe('a failover', () => {
    test('25006: 503 with Retry-After, the idle connections to that host closed; writes then go to the promoted standby', async () => {
      const { http, pool, logger } = await start({ host: hosts(primary, standby), targetSessionAttrs: 'read-write', max: 4 });
      expect(await serverPorts(pool, 3)).toEqual([primary.port, primary.port, primary.port]);
      await http().post('/write').expect(201, String(primary.port));
      expect(await primary.sessionCount('postgres')).toBe(3);

      await primary.setReadOnly(true);
      const refused = await http().post('/write');
      expect(refused.status).toBe(503);
      expect(refused.headers['retry-after']).toBe('1');
      expect(refused.body).toEqual({ statusCode: 503, message: 'Service Unavailable' });
      await waitFor(async () => ((await primary.sessionCount('postgres')) === 0 ? true : undefined), 'the connections to the old primary to close');
      expect(pool.totalCount).toBe(0);

      await standby.promote();
      await http().post('/write').expect(201, String(standby.port));
      // One line as the primary is lost, one as the new one is found (the first choice of a host is a debug line).
      expect(logger.matching(/refused a write|connections go to .* now/)).toEqual([
        `Datasource "default": ${host(primary)} refused a write (SQLSTATE 25006); new connections look for another host matching targetSessionAttrs 'read-write'`,
        expect.stringMatching(
          new RegExp(`^Datasource "default": connections go to ${host(standby)} now \\(a read-write primary\\); writes were unavailable for \\d+ ms since ${host(primary)} was lost$`),
        ),
      ]);
    }, 30_000);

    test('a transaction that meets 25006 is retried once, on the new primary, and commits', async () => {
      // After the test above the standby is the primary; the old primary is made writable, the new one read-only.
      const { http, pool, logger } = await start({ host: hosts(primary, standby), targetSessionAttrs: 'read-write', max: 2 });
      await primary.setReadOnly(false);
      expect(await serverPorts(pool, 1)).toEqual([standby.port]);
      const before = (await primary.query<{ count: number }>('postgres', 'SELECT count(*)::int AS count FROM items')).rows[0].count;
      await standby.setReadOnly(true);
      const retried = await http().post('/write-in-transaction').expect(201, String(primary.port));
      expect(retried.headers['retry-after']).toBeUndefined();
      expect(logger.matching(/refused a write/)).toEqual([expect.stringContaining(`${host(standby)} refused a write (SQLSTATE 25006)`)]);
      // Its connection was closed, which ended the transaction there: no rollback to fail and report.
      expect(logger.matching(/rolling back/)).toEqual([]);
      const after = (await primary.query<{ count: number }>('postgres', 'SELECT count(*)::int AS count FROM items')).rows[0].count;
      expect(after).toBe(before + 1);
    }, 30_000);
  });
});
