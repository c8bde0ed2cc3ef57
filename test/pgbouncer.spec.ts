import { Controller, Get, Injectable, type INestApplication } from '@nestjs/common';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { getPoolToken, InjectConnection, PoolConnection, PoolModule, SessionStateError } from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { createHttpApp } from './support/http-app.js';
import { startPgBouncer, type PgBouncer } from './support/pgbouncer.js';

const SERVER_POOL_SIZE = 4;

@Injectable()
class CounterService {
  constructor(@InjectConnection() readonly connection: PoolConnection) {}

  async bump(): Promise<number> {
    await this.connection.query('SELECT pg_sleep(0.02)');
    const { rows } = await this.connection.query<{ hits: number }>('UPDATE counter SET hits = hits + 1 RETURNING hits');
    return rows[0].hits;
  }
}

@Controller()
class CounterController {
  constructor(private readonly counter: CounterService) {}
  @Get('bump')
  bump(): Promise<number> {
    return this.counter.bump();
  }
}

describe('behind PgBouncer in transaction mode', () => {
  let db: TestDatabase;
  let bouncer: PgBouncer;

  beforeAll(async () => {
    [db, bouncer] = await Promise.all([createTestDatabase('bouncer'), startPgBouncer(SERVER_POOL_SIZE)]);
    await db.query('CREATE TABLE counter (hits int NOT NULL); INSERT INTO counter VALUES (0)');
  });

  afterAll(async () => {
    await bouncer?.stop();
    await db?.drop();
  });

  async function startInstance(): Promise<INestApplication> {
    return createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...bouncer.optionsFor(db.name), max: 10 })],
        controllers: [CounterController],
        providers: [CounterService],
      },
      'express',
    );
  }

  const serverConnections = async (): Promise<number> =>
    Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name])).rows[0].n);

  it('serves every request of instances that together ask for more connections than the server pool', async () => {
    const instances = await Promise.all([startInstance(), startInstance(), startInstance()]);
    try {
      let peak = 0;
      let sampling = true;
      const sampler = (async () => {
        while (sampling) peak = Math.max(peak, await serverConnections());
      })();
      const requests = instances.flatMap((app) =>
        Array.from({ length: 20 }, () => supertest(app.getHttpServer()).get('/bump').expect(200)),
      );
      await Promise.all(requests);
      sampling = false;
      await sampler;
      const { rows } = await db.query<{ hits: number }>('SELECT hits FROM counter');
      expect(rows[0].hits).toBe(60);
      expect(peak).toBeGreaterThan(0);
      // The sampler's own connection goes straight to the server, not through PgBouncer.
      expect(peak).toBeLessThanOrEqual(SERVER_POOL_SIZE);
      for (const app of instances) {
        const pool = app.get<Pool>(getPoolToken());
        expect(pool.totalCount - pool.idleCount).toBe(0);
      }
    } finally {
      await Promise.all(instances.map((app) => app.close()));
    }
  });

  it.each([
    ["SET statement_timeout = '1s'", /SET LOCAL/],
    ['LISTEN jobs', /LISTEN/],
    ['SELECT pg_advisory_lock(42)', /pg_advisory_xact_lock/],
    ['PREPARE q AS SELECT 1', /prepared statements/],
  ])('refuses %s with a SessionStateError that says why', async (sql, why) => {
    const app = await startInstance();
    try {
      const connection = app.get(CounterService).connection;
      const failure = connection.query(sql);
      await expect(failure).rejects.toBeInstanceOf(SessionStateError);
      await expect(failure).rejects.toThrow(why);
      await expect(connection.query({ name: 'named', text: 'SELECT 1' })).rejects.toBeInstanceOf(SessionStateError);
      // What transaction mode keeps works as usual.
      await expect(connection.query("SELECT set_config('application_name', 'x', true), pg_advisory_xact_lock(42)")).resolves.toBeDefined();
    } finally {
      await app.close();
    }
  });
});
