import { Controller, Get, Injectable, type INestApplication, type INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DrizzleQueryError, eq, sql, TransactionRollbackError } from 'drizzle-orm';
import { migrate } from 'drizzle-orm/node-postgres/migrator';
import { pgTable, serial, text } from 'drizzle-orm/pg-core';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Pool } from 'pg';
import supertest from 'supertest';
import {
  afterCommit,
  getConnectionToken,
  getPoolToken,
  InjectConnection,
  InvalidTransactionOptionsError,
  PoolConnection,
  PoolModule,
  RequestAbandonedError,
  RequestDeadline,
  Transactional,
  TransactionFinishedError,
} from '../lib/index.js';
import { beginTestTransaction } from '../lib/testing/index.js';
import { DrizzleModule, getDrizzleToken, InjectDrizzle, type DrizzleDatabase, type DrizzleTransaction } from '../lib/drizzle/index.js';
import { backendStates, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { createHttpApp, requestToHangUp } from './support/http-app.js';
import { Probe } from './support/probe.js';
import { expectNoOpenTransaction } from './support/transactions.js';

const jobs = pgTable('jobs', { id: serial('id').primaryKey(), label: text('label').notNull() });
const schema = { jobs };
type Db = DrizzleDatabase<typeof schema>;

type Seen = { pid: number; txid: string };
// txid_current() is the top-level transaction's id, inside a savepoint too.
const SEEN_SQL = 'SELECT pg_backend_pid() AS pid, txid_current()::text AS txid';

async function seenBy(db: Db | DrizzleTransaction<typeof schema>): Promise<Seen> {
  return (await db.execute<Seen>(sql.raw(SEEN_SQL))).rows[0];
}

/** A service on `@InjectConnection()`, as the application's others are. */
@Injectable()
class Steps {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    @InjectDrizzle() private readonly db: Db,
  ) {}

  async seen(): Promise<Seen> {
    return (await this.connection.query<Seen>(SEEN_SQL)).rows[0];
  }

  @Transactional()
  async record(label: string): Promise<Seen> {
    await this.connection.query('INSERT INTO jobs (label) VALUES ($1)', [label]);
    return this.seen();
  }

  /** A db.transaction() that fails inside a @Transactional() method that goes on. */
  @Transactional()
  async drizzleInside(): Promise<{ outer: Seen; inner: Seen }> {
    const outer = await this.record('outer');
    let inner: Seen | undefined;
    await this.db
      .transaction(async (tx) => {
        await tx.insert(jobs).values({ label: 'inner' });
        inner = await seenBy(tx);
        throw new Error('undo inner');
      })
      .catch(() => undefined);
    return { outer, inner: inner! };
  }
}

@Controller()
class DrizzleController {
  constructor(
    @InjectDrizzle() private readonly db: Db,
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly probe: Probe,
  ) {}

  @Get('pids')
  async pids(): Promise<{ drizzle: number; connection: number; again: number }> {
    const drizzle = (await seenBy(this.db)).pid;
    const connection = (await this.connection.query<Seen>(SEEN_SQL)).rows[0].pid;
    const again = (await this.db.execute<{ pid: number }>(sql`SELECT pg_backend_pid() AS pid`)).rows[0].pid;
    return { drizzle, connection, again };
  }

  /** A query that outlasts the request's deadline. */
  @Get('deadline')
  @RequestDeadline(300)
  async deadline(): Promise<void> {
    await this.db.execute(sql`SELECT pg_sleep(30)`);
  }

  /** A transaction that inserts a row, then waits on the server until the client hangs up. */
  @Get('hang-up')
  hangUp(): Promise<void> {
    return this.probe.follow(() =>
      this.db.transaction(async (tx) => {
        await tx.insert(jobs).values({ label: 'abandoned' });
        this.probe.held.resolve((await seenBy(tx)).pid);
        await tx.execute(sql`SELECT pg_sleep(30)`);
      }),
    );
  }
}

describe('Drizzle on the request connection', () => {
  let database: TestDatabase;
  let app: INestApplication;
  let pool: Pool;
  let db: Db;
  let steps: Steps;
  const probe = new Probe();

  beforeAll(async () => {
    database = await createTestDatabase('drizzle');
    app = await createHttpApp(
      {
        // maxUses: 1 gives every checkout a new connection: only the request's scope keeps queries on one.
        imports: [
          PoolModule.forRoot({ ...database.options, max: 3, maxUses: 1 }),
          PoolModule.forRoot({ ...database.options, name: 'reports', max: 1 }),
          DrizzleModule.forRoot({ schema }),
          DrizzleModule.forRoot({ name: 'reports' }),
        ],
        controllers: [DrizzleController],
        providers: [Steps, { provide: Probe, useValue: probe }],
      },
      'express',
    );
    pool = app.get(getPoolToken());
    db = app.get(getDrizzleToken());
    steps = app.get(Steps);
    await pool.query('CREATE TABLE jobs (id serial PRIMARY KEY, label text NOT NULL)');
  });

  beforeEach(() => pool.query('TRUNCATE jobs'));
  afterEach(async () => {
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'every client back');
    await expectNoOpenTransaction(pool, database.name);
  });

  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  const labels = async (): Promise<string[]> => (await db.select({ label: jobs.label }).from(jobs).orderBy(jobs.id)).map((row) => row.label);

  it('is one instance per datasource, on its PoolConnection, and a twin on the connection that reads from replicas', () => {
    expect(app.get(DrizzleController)['db']).toBe(db);
    expect(app.get(Steps)['db']).toBe(db);
    expect(db.$client).toBe(app.get(getConnectionToken()));
    const replica = app.get<DrizzleDatabase>(getDrizzleToken('default', { replica: true }));
    expect(replica).not.toBe(db);
    expect(replica.$client).toBe(app.get(getConnectionToken('default', { replica: true })));
  });

  it('is a database of its own per named datasource', () => {
    const reports = app.get<DrizzleDatabase>(getDrizzleToken('reports'));
    expect(reports).not.toBe(db);
    expect(reports.$client.name).toBe('reports');
    expect(db.$client.name).toBe('default');
  });

  it("runs a request's queries on the request's backend, as @InjectConnection() does", async () => {
    const { body } = await supertest(app.getHttpServer()).get('/pids').expect(200);
    expect(body.drizzle).toBe(body.connection);
    expect(body.again).toBe(body.connection);
  });

  it('runs outside a request on a client borrowed per query, and types rows by the schema', async () => {
    const inserted = await db.insert(jobs).values([{ label: 'a' }, { label: 'b' }]).returning();
    const first: { id: number; label: string } = inserted[0];
    expect(first).toEqual({ id: expect.any(Number), label: 'a' });
    expect(await db.select().from(jobs).where(eq(jobs.label, 'b'))).toEqual([{ id: inserted[1].id, label: 'b' }]);
    expect(await db.query.jobs.findFirst({ where: eq(jobs.id, first.id) })).toEqual(first);
    expect(await db.$count(jobs)).toBe(2);
    expect(pool.totalCount - pool.idleCount).toBe(0);
  });

  it('runs a named prepared statement again on other clients, with its placeholders', async () => {
    await db.insert(jobs).values([{ label: 'a' }, { label: 'b' }]);
    const byLabel = db.select({ label: jobs.label }).from(jobs).where(eq(jobs.label, sql.placeholder('label'))).prepare('job_by_label');
    // maxUses: 1: each execution borrows a new connection, which prepares the statement first.
    expect(await byLabel.execute({ label: 'a' })).toEqual([{ label: 'a' }]);
    expect(await byLabel.execute({ label: 'b' })).toEqual([{ label: 'b' }]);
  });

  it('commits db.transaction() when its callback resolves, on one client that services join', async () => {
    const seen = await db.transaction(async (tx) => {
      await tx.insert(jobs).values({ label: 'committed' });
      return { tx: await seenBy(tx), service: await steps.seen(), db: await seenBy(db) };
    });
    expect(seen.service).toEqual(seen.tx);
    expect(seen.db).toEqual(seen.tx);
    expect(await labels()).toEqual(['committed']);
  });

  it('rolls back db.transaction() when its callback throws or calls tx.rollback()', async () => {
    await expect(
      db.transaction(async (tx) => {
        await tx.insert(jobs).values({ label: 'thrown' });
        throw new Error('undo');
      }),
    ).rejects.toThrow('undo');
    await expect(
      db.transaction(async (tx) => {
        await tx.insert(jobs).values({ label: 'rolled back' });
        tx.rollback();
      }),
    ).rejects.toBeInstanceOf(TransactionRollbackError);
    expect(await labels()).toEqual([]);
  });

  it('runs afterCommit() hooks registered in db.transaction() once it committed, and drops those of a rolled back savepoint', async () => {
    const ran: Array<{ hook: string; rows: number }> = [];
    const count = async (): Promise<number> => db.$count(jobs);
    await db.transaction(async (tx) => {
      await tx.insert(jobs).values({ label: 'committed' });
      afterCommit(async () => ran.push({ hook: 'outer', rows: await count() }));
      await tx
        .transaction(async () => {
          afterCommit(() => ran.push({ hook: 'undone', rows: -1 }));
          throw new Error('undo the savepoint');
        })
        .catch(() => undefined);
      expect(ran).toEqual([]);
    });
    expect(ran).toEqual([{ hook: 'outer', rows: 1 }]);
  });

  it('maps Drizzle’s config onto the transaction, and refuses an access mode it does not know', async () => {
    const settingsSql = sql`SELECT current_setting('transaction_isolation') AS isolation, current_setting('transaction_read_only') AS "readOnly"`;
    const settings = await db.transaction((tx) => tx.execute<{ isolation: string; readOnly: string }>(settingsSql), {
      isolationLevel: 'repeatable read',
      accessMode: 'read only',
    });
    expect(settings.rows[0]).toEqual({ isolation: 'repeatable read', readOnly: 'on' });
    const wrong = { accessMode: 'readonly' } as unknown as { accessMode: 'read only' };
    await expect(db.transaction(async () => undefined, wrong)).rejects.toBeInstanceOf(InvalidTransactionOptionsError);
  });

  it('runs a nested tx.transaction() as a savepoint of the same transaction', async () => {
    let inner: Seen | undefined;
    const outer = await db.transaction(async (tx) => {
      await tx.insert(jobs).values({ label: 'outer' });
      await tx
        .transaction(async (nested) => {
          await nested.insert(jobs).values({ label: 'undone' });
          inner = await seenBy(nested);
          throw new Error('undo the savepoint');
        })
        .catch(() => undefined);
      await tx.transaction((nested) => nested.insert(jobs).values({ label: 'kept' }));
      return seenBy(tx);
    });
    expect(inner).toEqual(outer);
    expect(await labels()).toEqual(['outer', 'kept']);
  });

  it('runs db.transaction() inside @Transactional() as a savepoint: one transaction id, its throw undoes its part alone', async () => {
    const { outer, inner } = await steps.drizzleInside();
    expect(inner).toEqual(outer);
    expect(await labels()).toEqual(['outer']);
  });

  it('lets a @Transactional() service called inside db.transaction() join it', async () => {
    let mine: Seen | undefined;
    let theirs: Seen | undefined;
    await expect(
      db.transaction(async (tx) => {
        mine = await seenBy(tx);
        theirs = await steps.record('from the service');
        throw new Error('undo all');
      }),
    ).rejects.toThrow('undo all');
    expect(theirs).toEqual(mine);
    expect(await labels()).toEqual([]);
  });

  it("wraps the server's errors as Drizzle does, and runs the transaction again on a serialization failure when asked", async () => {
    const conflict = sql`DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`;
    const failure = await db.transaction((tx) => tx.execute(conflict)).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(DrizzleQueryError);
    expect((failure as DrizzleQueryError).cause).toMatchObject({ code: '40001' });
    let attempts = 0;
    await db.transaction(
      async (tx) => {
        await tx.insert(jobs).values({ label: `attempt ${++attempts}` });
        if (attempts === 1) await tx.execute(conflict);
      },
      { isolationLevel: 'serializable', retry: { maxRetries: 2, initialDelayMs: 0 } },
    );
    expect(attempts).toBe(2);
    expect(await labels()).toEqual(['attempt 2']);
  });

  it('refuses queries and savepoints on a tx whose transaction ended', async () => {
    let ended: DrizzleTransaction<typeof schema> | undefined;
    await db.transaction(async (tx) => {
      ended = tx;
    });
    await expect(ended!.select().from(jobs)).rejects.toBeInstanceOf(TransactionFinishedError);
    await expect(ended!.transaction(async () => undefined)).rejects.toBeInstanceOf(TransactionFinishedError);
  });

  it("answers 504 when a Drizzle query outlasts the request's deadline, as for @InjectConnection()", async () => {
    const response = await supertest(app.getHttpServer()).get('/deadline');
    expect(response.status).toBe(504);
    expect((await backendStates(database.name)).filter((b) => b.query.includes('pg_sleep') && b.state === 'active')).toEqual([]);
  });

  it("runs Drizzle's migrator in one transaction of the module: a failed migration leaves nothing", async () => {
    const folder = mkdtempSync(join(tmpdir(), 'npp-drizzle-migrations-'));
    const write = (entries: Array<[tag: string, sql: string]>): void => {
      mkdirSync(join(folder, 'meta'), { recursive: true });
      const journal = entries.map(([tag], idx) => ({ idx, version: '7', when: 1_700_000_000_000 + idx, tag, breakpoints: true }));
      writeFileSync(join(folder, 'meta', '_journal.json'), JSON.stringify({ version: '7', dialect: 'postgresql', entries: journal }));
      for (const [tag, text] of entries) writeFileSync(join(folder, `${tag}.sql`), text);
    };
    const notes = ['0000_notes', 'CREATE TABLE notes (id serial PRIMARY KEY);\n--> statement-breakpoint\nINSERT INTO notes DEFAULT VALUES;'] as [string, string];
    const tables = async (): Promise<string[]> =>
      (await pool.query<{ name: string }>("SELECT tablename AS name FROM pg_tables WHERE tablename IN ('notes', 'half') ORDER BY 1")).rows.map((row) => row.name);
    try {
      // Outside a request, with maxUses: 1: only the module's transaction keeps the statements on one client.
      write([notes, ['0001_broken', 'CREATE TABLE half (id int);\n--> statement-breakpoint\nSELECT 1/0;']]);
      await expect(migrate(db, { migrationsFolder: folder, migrationsSchema: 'public' })).rejects.toThrow();
      expect(await tables()).toEqual([]);
      write([notes]);
      await migrate(db, { migrationsFolder: folder, migrationsSchema: 'public' });
      await migrate(db, { migrationsFolder: folder, migrationsSchema: 'public' }); // applied once
      expect(await tables()).toEqual(['notes']);
      expect((await pool.query('SELECT count(*)::int AS notes FROM notes')).rows).toEqual([{ notes: 1 }]);
    } finally {
      rmSync(folder, { recursive: true, force: true });
      await pool.query('DROP TABLE IF EXISTS notes, half, __drizzle_migrations');
    }
  });

  it('runs in the test transaction of nestjs-pg-pool/testing, requests included, undone with it', async () => {
    const test = await beginTestTransaction(app);
    try {
      await db.transaction((tx) => tx.insert(jobs).values({ label: 'in the test' }));
      const { body } = await supertest(app.getHttpServer()).get('/pids').expect(200);
      expect(body.drizzle).toBe((await seenBy(db)).pid);
      expect(await labels()).toEqual(['in the test']);
    } finally {
      await test.rollback();
    }
    expect(await labels()).toEqual([]);
  });

  it('rolls back a transaction whose client hung up and hands its client back', async () => {
    probe.reset();
    const request = await requestToHangUp(app, '/hang-up');
    const pid = await probe.held.promise;
    await waitFor(
      async () => ((await backendStates(database.name)).some((b) => b.pid === pid && b.query.includes('pg_sleep')) ? true : undefined),
      'the query to run',
    );
    request.hangUp();
    expect(await probe.outcome.promise).toBeInstanceOf(RequestAbandonedError);
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'every client back');
    await expectNoOpenTransaction(pool, database.name);
    expect(await labels()).toEqual([]);
  });
});

describe('the Drizzle example of the docs', () => {
  let database: TestDatabase;
  let app: INestApplicationContext;
  let pool: Pool;

  beforeAll(async () => {
    database = await createTestDatabase('drizzle_example');
    const { schema: bank, LedgerService, AccountsService, PayoutsService } = await import('./examples/drizzle.js');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot(database.options), DrizzleModule.forRoot({ schema: bank })],
      providers: [LedgerService, AccountsService, PayoutsService],
    }).compile();
    app = await moduleRef.init();
    pool = app.get(getPoolToken());
    await pool.query(`
      CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL, balance integer NOT NULL CHECK (balance >= 0));
      CREATE TABLE ledger (id serial PRIMARY KEY, from_id integer NOT NULL, to_id integer NOT NULL, amount integer NOT NULL);
      INSERT INTO accounts (owner, balance) VALUES ('ada', 100), ('bob', 0), ('eve', 0);`);
  });

  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  it('pays what the account covers: a failed transfer is undone alone, the others commit with the ledger', async () => {
    const { AccountsService, PayoutsService } = await import('./examples/drizzle.js');
    const paid = await app.get(PayoutsService).payAll(1, [
      { to: 2, amount: 60 },
      { to: 3, amount: 60 }, // overdraws: the CHECK fails
      { to: 3, amount: 40 },
    ]);
    expect(paid).toBe(2);
    const accounts = app.get(AccountsService);
    expect([await accounts.balanceOf('ada'), await accounts.balanceOf('bob'), await accounts.balanceOf('eve')]).toEqual([0, 60, 40]);
    const { rows } = await pool.query('SELECT from_id, to_id, amount FROM ledger ORDER BY id');
    expect(rows).toEqual([
      { from_id: 1, to_id: 2, amount: 60 },
      { from_id: 1, to_id: 3, amount: 40 },
    ]);
    await expectNoOpenTransaction(pool, database.name);
  });
});
