import { ConflictException, Controller, Get, Injectable, Param, Post, Query, type INestApplication } from '@nestjs/common';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { PoolHealthIndicator } from '../lib/health/index.js';
import {
  getConnectionToken,
  getPoolToken,
  InjectConnection,
  PoolConnection,
  PoolModule,
  PoolStatsService,
  SessionStateError,
  Transactional,
} from '../lib/index.js';
import { createTestDatabase, waitForRunningQuery, type TestDatabase } from './support/database.js';
import { createHttpApp, requestToHangUp } from './support/http-app.js';
import { startPgBouncer, type PgBouncer } from './support/pgbouncer.js';
import { whenAvailable } from './support/services.js';
import { Probe } from './support/probe.js';
import { expectNoOpenTransaction } from './support/transactions.js';

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

/** The server backend and transaction a statement ran in, as the server (not PgBouncer) saw them. */
interface Seen {
  pid: number;
  txid: string;
}

@Injectable()
class OrdersService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Transactional()
  async add(label: string): Promise<Seen> {
    const { rows } = await this.connection.query<Seen>(
      'INSERT INTO orders (label) VALUES ($1) RETURNING pg_backend_pid() AS pid, txid_current()::text AS txid',
      [label],
    );
    return rows[0];
  }
}

@Injectable()
class LedgerService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Transactional()
  async book(label: string, fail: boolean): Promise<Seen> {
    const { rows } = await this.connection.query<Seen>(
      'INSERT INTO ledger (label) VALUES ($1) RETURNING pg_backend_pid() AS pid, txid_current()::text AS txid',
      [label],
    );
    if (fail) throw new ConflictException(`${label} rejected by the ledger`);
    return rows[0];
  }
}

@Controller()
class BouncedController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly orders: OrdersService,
    private readonly ledger: LedgerService,
    private readonly health: HealthCheckService,
    private readonly indicator: PoolHealthIndicator,
  ) {}

  /** Two services whose @Transactional() methods join the handler's transaction; `?fail=ledger` makes the second throw. */
  @Post('orders/:label')
  @Transactional()
  async place(@Param('label') label: string, @Query('fail') fail?: string): Promise<Seen[]> {
    return [await this.orders.add(label), await this.ledger.book(label, fail === 'ledger')];
  }

  /** Several statements, each its own transaction (so PgBouncer may run each on another server connection), then a throw. */
  @Get('several-then-throw')
  async severalThenThrow(): Promise<never> {
    await this.connection.query("INSERT INTO items (label) VALUES ('autocommitted')");
    await this.connection.query('SELECT count(*) FROM items');
    await this.connection.query('SELECT pg_sleep(0.01)');
    throw new Error('handler failed after several queries');
  }

  /** Opens a transaction by hand and throws inside it: the module must roll it back, or PgBouncer keeps its server connection pinned. */
  @Get('begin-then-throw')
  async beginThenThrow(): Promise<never> {
    await this.connection.query('BEGIN');
    await this.connection.query("INSERT INTO items (label) VALUES ('never committed')");
    throw new Error('handler failed inside its transaction');
  }

  @Get('health')
  check(): Promise<unknown> {
    return this.health.check([() => this.indicator.pingCheck('database'), () => this.indicator.poolCheck('database_pool')]);
  }
}

/** A request that holds its client in a long query until it is cancelled. */
@Controller()
class SleepController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly probe: Probe,
  ) {}

  @Get('sleep')
  sleep(): Promise<string> {
    return this.probe.follow(async () => {
      this.probe.held.resolve((await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid);
      await this.connection.query('SELECT pg_sleep(15)');
      return 'slept';
    });
  }

  @Get('ping')
  async ping(): Promise<number> {
    return (await this.connection.query<{ one: number }>('SELECT 1 AS one')).rows[0].one;
  }
}

describe('behind PgBouncer in transaction mode', () => {
  const test = whenAvailable('pgbouncer', 'PgBouncer suite');
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

  test('serves every request of instances that together ask for more connections than the server pool', async () => {
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

  describe('core, transaction and health behaviour', () => {
    let app: INestApplication;
    let pool: Pool;
    let connection: PoolConnection;
    let stats: PoolStatsService;

    beforeAll(async () => {
      await db.query(
        'CREATE TABLE items (label text NOT NULL); CREATE TABLE orders (label text NOT NULL); CREATE TABLE ledger (label text NOT NULL)',
      );
      app = await createHttpApp(
        {
          imports: [PoolModule.forRoot({ ...bouncer.optionsFor(db.name), max: 5 }), TerminusModule.forRoot({ logger: false })],
          controllers: [BouncedController],
          providers: [OrdersService, LedgerService, PoolHealthIndicator],
        },
        'express',
      );
      pool = app.get<Pool>(getPoolToken());
      connection = app.get<PoolConnection>(getConnectionToken());
      stats = app.get(PoolStatsService);
    });

    beforeEach(() => db.query('TRUNCATE items, orders, ledger'));
    afterEach(() => expectNoOpenTransaction(pool, db.name));
    afterAll(() => app?.close());

    const http = (): ReturnType<typeof supertest> => supertest(app.getHttpServer());
    const labels = async (table: 'items' | 'orders' | 'ledger'): Promise<string[]> =>
      (await db.query<{ label: string }>(`SELECT label FROM ${table} ORDER BY label`)).rows.map((row) => row.label);

    test('hands the client back after a request that ran several queries and threw', async () => {
      const before = stats.get();
      await http().get('/several-then-throw').expect(500);
      expect(await labels('items')).toEqual(['autocommitted']);
      const after = stats.get();
      expect(after.acquired - before.acquired).toBe(1);
      expect(after.released - before.released).toBe(1);
      expect(after).toMatchObject({ inUse: 0, waiting: 0 });
    });

    test('rolls back a transaction a request opened by hand and threw in, freeing its server connection', async () => {
      await http().get('/begin-then-throw').expect(500);
      expect(await labels('items')).toEqual([]);
      expect(stats.get()).toMatchObject({ inUse: 0, waiting: 0 });
    });

    test('connection.transaction() commits: every statement on one server backend, the rows visible afterwards', async () => {
      const seen = await connection.transaction(async (tx) => {
        const sql = 'INSERT INTO items (label) VALUES ($1) RETURNING pg_backend_pid() AS pid, txid_current()::text AS txid';
        const first = await connection.query<Seen>(sql, ['one']);
        const second = await tx.query<Seen>(sql, ['two']);
        return [first.rows[0], second.rows[0]];
      });
      expect(seen[1]).toEqual(seen[0]);
      expect(await labels('items')).toEqual(['one', 'two']);
    });

    test('connection.transaction() rolls back when the work throws, and rethrows its error', async () => {
      const failure = new Error('work failed');
      await expect(
        connection.transaction(async () => {
          await connection.query("INSERT INTO items (label) VALUES ('lost')");
          await connection.query("INSERT INTO items (label) VALUES ('lost too')");
          throw failure;
        }),
      ).rejects.toBe(failure);
      expect(await labels('items')).toEqual([]);
    });

    test('a savepoint inside a transaction undoes its own work alone', async () => {
      await connection.transaction(async () => {
        await connection.query("INSERT INTO items (label) VALUES ('before')");
        const inner = connection.transaction(async (savepoint) => {
          expect(savepoint.depth).toBe(1);
          await connection.query("INSERT INTO items (label) VALUES ('undone')");
          await connection.query('SELECT 1/0');
        });
        await expect(inner).rejects.toMatchObject({ code: '22012' });
        await connection.transaction(() => connection.query("INSERT INTO items (label) VALUES ('kept')"));
      });
      expect(await labels('items')).toEqual(['before', 'kept']);
    });

    test('@Transactional() on two services in one HTTP request commits both in one server transaction', async () => {
      const { body } = await http().post('/orders/first').expect(201);
      const [order, booking] = body as Seen[];
      expect(booking).toEqual(order);
      expect(await labels('orders')).toEqual(['first']);
      expect(await labels('ledger')).toEqual(['first']);
    });

    test('@Transactional() on two services in one HTTP request rolls both back when the second throws', async () => {
      const { body } = await http().post('/orders/second?fail=ledger').expect(409);
      expect(body.message).toBe('second rejected by the ledger');
      expect(await labels('orders')).toEqual([]);
      expect(await labels('ledger')).toEqual([]);
    });

    test('pingCheck and poolCheck report up through PgBouncer', async () => {
      const { body } = await http().get('/health').expect(200);
      expect(body.status).toBe('ok');
      expect(body.details.database).toEqual({ status: 'up', responseTime: expect.any(Number) });
      expect(body.details.database_pool).toMatchObject({ status: 'up', inUse: 0, waiting: 0, max: 5 });
      const indicator = app.get(PoolHealthIndicator);
      expect((await indicator.pingCheck('direct', { timeout: 2000 })).direct.status).toBe('up');
    });

    test('leaves, after all of it, no client checked out and no server backend idle in transaction', async () => {
      const { acquired, released, inUse, waiting } = stats.get();
      expect({ inUse, waiting, outstanding: acquired - released }).toEqual({ inUse: 0, waiting: 0, outstanding: 0 });
      await expectNoOpenTransaction(pool, db.name);
    });
  });

  describe('cancelling a running query', () => {
    // A PgBouncer of its own: the bug below may kill it.
    let own: PgBouncer;
    let app: INestApplication;
    const probe = new Probe();

    beforeAll(async () => {
      own = await startPgBouncer(2);
      app = await createHttpApp(
        {
          imports: [PoolModule.forRoot({ ...own.optionsFor(db.name), max: 2 })],
          controllers: [SleepController],
          providers: [{ provide: Probe, useValue: probe }],
        },
        'express',
      );
    });

    afterAll(async () => {
      await app?.close();
      await own?.stop();
    });

    // The cancel must keep its socket open until the server closes it: PgBouncer 1.18 drops a
    // half-closed CancelRequest, or forwards it and exits on "bad client state" (pgbouncer#801).
    test('cancels the query of a request whose HTTP client hung up, and PgBouncer stays up', async () => {
      // Several times over: the race in PgBouncer lets a cancel through unharmed now and then.
      for (let attempt = 1; attempt <= 5; attempt++) {
        probe.reset();
        const request = await requestToHangUp(app, '/sleep');
        await waitForRunningQuery(db.name, await probe.held.promise, 'pg_sleep');
        request.hangUp();
        // Not cancelled, the query would end 'slept', 15 s on: no shorter bound for a loaded machine to miss.
        const outcome = await probe.outcome.promise;
        expect(outcome).toMatchObject({ cause: { code: '57014' } }); // query_canceled
        // PgBouncer dies, if it does, just after forwarding the cancel.
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(own.log()).not.toMatch(/FATAL/);
        expect(own.running).toBe(true);
        await supertest(app.getHttpServer()).get('/ping').expect(200, '1');
      }
    });
  });
});
