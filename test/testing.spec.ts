import { ConflictException, Controller, Get, Injectable, Param, Post, type INestApplication } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { ConnectionScope, getConnectionToken, getPoolToken, InjectConnection, InjectPool, PoolConnection, PoolModule, Transactional } from '../lib/index.js';
import { InjectKysely, KyselyModule } from '../lib/kysely/index.js';
import { beginTestTransaction, rollbackEachTest } from '../lib/testing/index.js';
import type { Kysely } from 'kysely';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { itWhenInjectLoads } from './support/fastify-inject.js';
import { createHttpApp } from './support/http-app.js';

const SEEDED = 2;

@Injectable()
class Notes {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    @InjectPool() private readonly pool: Pool,
    @InjectKysely() private readonly db: Kysely<{ notes: { body: string } }>,
  ) {}

  /** Through Kysely: a transaction of its own, hence a savepoint of the test's. */
  async addThroughKysely(body: string): Promise<void> {
    await this.db.transaction().execute((trx) => trx.insertInto('notes').values({ body }).execute());
  }

  async count(): Promise<number> {
    return (await this.connection.query<{ n: number }>('SELECT count(*)::int AS n FROM notes')).rows[0].n;
  }

  @Transactional()
  async addInTransaction(body: string): Promise<void> {
    await this.connection.query('INSERT INTO notes (body) VALUES ($1)', [body]);
    await this.separately(`${body} (requiresNew)`);
  }

  @Transactional({ propagation: 'requiresNew' })
  async separately(body: string): Promise<void> {
    await this.connection.query('INSERT INTO notes (body) VALUES ($1)', [body]);
  }

  /** A unique violation the application expects and answers 409: the request's later statements still run. */
  async addUnique(body: string): Promise<string> {
    try {
      await this.connection.query('INSERT INTO notes (body) VALUES ($1)', [body]);
      await this.connection.query('INSERT INTO notes (body) VALUES ($1)', [body]);
      return 'twice';
    } catch {
      return `${await this.count()} after the conflict`;
    }
  }

  async addThroughPool(body: string): Promise<void> {
    await this.pool.query('INSERT INTO notes (body) VALUES ($1)', [body]);
  }

  async addThroughRawClient(body: string): Promise<void> {
    const client = await this.connection.getClient();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO notes (body) VALUES ($1)', [body]);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }

  async rolledBackByThrow(body: string): Promise<void> {
    await this.connection
      .transaction(async () => {
        await this.connection.query('INSERT INTO notes (body) VALUES ($1)', [body]);
        throw new ConflictException('undone');
      })
      .catch(() => undefined);
  }
}

@Controller('notes')
class NotesController {
  constructor(private readonly notes: Notes) {}

  @Post(':body')
  async add(@Param('body') body: string): Promise<number> {
    await this.notes.addInTransaction(body);
    return this.notes.count();
  }

  @Get('count')
  count(): Promise<number> {
    return this.notes.count();
  }

  @Post('unique/:body')
  unique(@Param('body') body: string): Promise<string> {
    return this.notes.addUnique(body);
  }
}

/** Each way the application under test writes, one per test in turn. */
const WRITES: Array<[string, (app: INestApplication, notes: Notes, n: number) => Promise<unknown>]> = [
  ['an HTTP request with a transaction and a requiresNew one', (app, _notes, n) => supertest(app.getHttpServer()).post(`/notes/http-${n}`).expect(201)],
  ['@Transactional() outside a request', (_app, notes, n) => ConnectionScope.run(() => notes.addInTransaction(`service-${n}`))],
  ['@InjectPool() pool.query', (_app, notes, n) => notes.addThroughPool(`pool-${n}`)],
  ['the raw client with its own BEGIN and COMMIT', (_app, notes, n) => ConnectionScope.run(() => notes.addThroughRawClient(`raw-${n}`))],
  ['a Kysely transaction', (_app, notes, n) => notes.addThroughKysely(`kysely-${n}`)],
];

describe('nestjs-pg-pool/testing: each test in a transaction rolled back at its end', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let notes: Notes;

  const rows = async (): Promise<string[]> => (await db.query<{ body: string }>('SELECT body FROM notes ORDER BY body')).rows.map((row) => row.body);

  beforeAll(async () => {
    db = await createTestDatabase('testing');
    await db.query('CREATE TABLE notes (body text PRIMARY KEY)');
    await db.query("INSERT INTO notes VALUES ('seed 1'), ('seed 2')");
    app = await createHttpApp(
      { imports: [PoolModule.forRoot({ ...db.options, max: 4 }), KyselyModule.forRoot()], controllers: [NotesController], providers: [Notes] },
      'express',
    );
    notes = app.get(Notes);
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  describe('20 tests that write', () => {
    rollbackEachTest(() => app);

    it.each(Array.from({ length: 20 }, (_, n) => n))('test %i writes and sees its writes, and no earlier test\'s', async (n) => {
      const [, write] = WRITES[n % WRITES.length];
      await write(app, notes, n);
      const count = await ConnectionScope.run(() => notes.count());
      // The HTTP and service paths write twice (a transaction and a requiresNew one inside it).
      expect(count).toBe(SEEDED + (n % WRITES.length < 2 ? 2 : 1));
      // Not committed: another connection sees the seed alone.
      expect(await rows()).toEqual(['seed 1', 'seed 2']);
    });

    it('rolls back a transaction the application rolls back, inside the test\'s', async () => {
      await ConnectionScope.run(() => notes.rolledBackByThrow('undone'));
      expect(await ConnectionScope.run(() => notes.count())).toBe(SEEDED);
    });

    it('lets a request go on after a statement of it failed outside a transaction', async () => {
      await supertest(app.getHttpServer()).post('/notes/unique/dup').expect(201, `${SEEDED + 1} after the conflict`);
      await supertest(app.getHttpServer()).get('/notes/count').expect(200, String(SEEDED + 1));
    });

    it('runs concurrent requests\' transactions one after the other on the one connection', async () => {
      const answers = await Promise.all(Array.from({ length: 8 }, (_, n) => supertest(app.getHttpServer()).post(`/notes/concurrent-${n}`).expect(201)));
      expect(answers).toHaveLength(8);
      await supertest(app.getHttpServer()).get('/notes/count').expect(200, String(SEEDED + 16));
    });
  });

  it('rolls back without waiting for work the test left running, and refuses that work', async () => {
    const transaction = await beginTestTransaction(app);
    const connection = app.get<PoolConnection>(getConnectionToken());
    const gate = new Deferred();
    const inside = new Deferred();
    // A request's transaction the test does not await: it holds the connection's turn, then waits.
    const left = ConnectionScope.run(() =>
      connection.transaction(async () => {
        await connection.query("INSERT INTO notes VALUES ('left running')");
        inside.resolve();
        await gate.promise;
        await connection.query("INSERT INTO notes VALUES ('after the rollback')");
      }),
    );
    await inside.promise;
    // Another scope's statement waits for that transaction's turn.
    const queued = ConnectionScope.run(() => connection.query('SELECT 1'));
    await transaction.rollback();
    await expect(queued).rejects.toThrow('the test transaction has ended');
    gate.resolve();
    await expect(left).rejects.toThrow('the test transaction has ended');
    expect(await rows()).toEqual(['seed 1', 'seed 2']);
  });

  it('leaves the database as it found it, and every connection back in the pool', async () => {
    expect(await rows()).toEqual(['seed 1', 'seed 2']);
    const pool = app.get<Pool>(getPoolToken());
    expect(pool.totalCount - pool.idleCount).toBe(0);
    expect(Object.hasOwn(pool, 'connect')).toBe(false);
  });

  itWhenInjectLoads('works on Fastify with inject(), with beginTestTransaction() called by hand', async () => {
    const fastify = (await createHttpApp(
      { imports: [PoolModule.forRoot({ ...db.options, max: 2 }), KyselyModule.forRoot()], controllers: [NotesController], providers: [Notes] },
      'fastify',
    )) as NestFastifyApplication;
    try {
      const transaction = await beginTestTransaction(fastify);
      try {
        const answer = await fastify.inject({ method: 'POST', url: '/notes/injected' });
        expect(answer.statusCode).toBe(201);
        expect(answer.body).toBe(String(SEEDED + 2));
        expect(fastify.get<PoolConnection>(getConnectionToken()).name).toBe('default');
      } finally {
        await transaction.rollback();
      }
      expect(await rows()).toEqual(['seed 1', 'seed 2']);
    } finally {
      await fastify.close();
    }
  });
});
