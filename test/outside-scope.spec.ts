import type { INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Pool } from 'pg';
import {
  ConnectionScope,
  ConnectionScopeClosedError,
  getConnectionToken,
  getPoolToken,
  NoConnectionScopeError,
  PoolClosedError,
  PoolConnection,
  PoolModule,
} from '../lib/index.js';
import { createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { Deferred } from './support/deferred.js';
import { holdClient, holdClients } from './support/hold-client.js';

const PID = 'SELECT pg_backend_pid() AS pid';

describe('outside a request', () => {
  const logger = new CapturingLogger();
  let db: TestDatabase;
  let app: INestApplicationContext;
  let connection: PoolConnection;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('outside');
    const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot({ ...db.options, max: 4 })] })
      .setLogger(logger)
      .compile();
    app = await moduleRef.init();
    connection = app.get(getConnectionToken());
    pool = app.get(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const checkedOut = (): number => pool.totalCount - pool.idleCount;

  it('borrows and returns a client per query', async () => {
    const holders = await Promise.all([1, 2, 3].map(() => connection.query<{ pid: number }>(PID)));
    expect(new Set(holders.map((r) => r.rows[0].pid)).size).toBe(3);
    expect(checkedOut()).toBe(0);
  });

  it('ConnectionScope.run keeps one client for all its queries and releases it after', async () => {
    const pids = await ConnectionScope.run(async () => {
      const [a, b] = await Promise.all([connection.query<{ pid: number }>(PID), connection.query<{ pid: number }>(PID)]);
      const client = await connection.getClient();
      const c = await client.query<{ pid: number }>(PID);
      expect(checkedOut()).toBe(1);
      return [a.rows[0].pid, b.rows[0].pid, c.rows[0].pid];
    });
    expect(new Set(pids).size).toBe(1);
    expect(checkedOut()).toBe(0);
  });

  it('releases the scope client when the function throws', async () => {
    await expect(
      ConnectionScope.run(async () => {
        await connection.query('SELECT 1');
        throw new Error('job failed');
      }),
    ).rejects.toThrow('job failed');
    expect(checkedOut()).toBe(0);
  });

  it('refuses getClient() where nothing would release the client', async () => {
    await expect(connection.getClient()).rejects.toBeInstanceOf(NoConnectionScopeError);
  });

  it('runs the queries and transactions of work that outlived its scope on clients of their own', async () => {
    const outliving = async (): Promise<{ scopePid: number; late: number[] }> => {
      let late: Promise<number[]> = Promise.resolve([]);
      let scopePid = 0;
      await ConnectionScope.run(async () => {
        scopePid = (await connection.query<{ pid: number }>(PID)).rows[0].pid;
        // Not awaited, as a fire-and-forget write is not.
        late = new Promise((resolve) => setImmediate(resolve)).then(() =>
          Promise.all([
            connection.query<{ pid: number }>(PID).then(({ rows }) => rows[0].pid),
            connection.transaction(async () => (await connection.query<{ pid: number }>(PID)).rows[0].pid),
          ]),
        );
      });
      return { scopePid, late: await late };
    };
    for (let round = 0; round < 2; round++) {
      const { scopePid, late } = await outliving();
      expect(scopePid).toEqual(expect.any(Number));
      expect(late).toEqual([expect.any(Number), expect.any(Number)]);
      expect(checkedOut()).toBe(0);
    }
    // Noted once per call site (two here, each met twice), at the application's line.
    const notes = logger.matching(/came after its request had ended/);
    expect(notes).toHaveLength(2);
    for (const note of notes) expect(note).toMatch(/outside-scope\.spec\.ts:\d+/);
  });

  it('lets a transaction that work not awaited by the scope runs on its client finish before the client goes back', async () => {
    const gate = new Deferred();
    let late: Promise<number> = Promise.resolve(0);
    let scopePid = 0;
    await ConnectionScope.run(async () => {
      scopePid = (await connection.query<{ pid: number }>(PID)).rows[0].pid;
      late = connection.transaction(async () => {
        await gate.promise;
        await connection.query('CREATE TABLE outlived (n int)');
        return (await connection.query<{ pid: number }>(PID)).rows[0].pid;
      });
    });
    expect(checkedOut()).toBe(1);
    gate.resolve();
    expect(await late).toBe(scopePid);
    await waitFor(async () => (checkedOut() === 0 ? true : undefined), 'the client to be back');
    expect((await pool.query("SELECT to_regclass('outlived') IS NOT NULL AS exists")).rows[0].exists).toBe(true);
  });

  it('refuses the statements after the end of a transaction opened with a raw BEGIN, which the end rolled back', async () => {
    let late: Promise<unknown> = Promise.resolve();
    await ConnectionScope.run(async () => {
      await connection.query('BEGIN');
      late = new Promise((resolve) => setImmediate(resolve)).then(() => connection.query('CREATE TABLE never_created (n int)'));
    });
    await expect(late).rejects.toBeInstanceOf(ConnectionScopeClosedError);
    await expect(late).rejects.toMatchObject({ state: 'in a transaction' });
    await waitFor(async () => (checkedOut() === 0 ? true : undefined), 'the client to be back');
    expect((await pool.query("SELECT to_regclass('never_created') IS NULL AS absent")).rows[0].absent).toBe(true);
  });

  it('runs a transaction asked for before its scope ended, whose client came after, in a scope of its own', async () => {
    const held = await holdClients(connection, 4);
    let late: Promise<number> = Promise.resolve(0);
    await ConnectionScope.run(() => void (late = connection.transaction(async () => (await connection.query<{ pid: number }>(PID)).rows[0].pid)));
    await held.release();
    expect(held.pids).toContain(await late);
    expect(checkedOut()).toBe(0);
  });

  it('runs a query asked for before its scope ended, whose client came after', async () => {
    let asked: Promise<{ rows: unknown[] }> = Promise.resolve({ rows: [] });
    // Not awaited: the scope ends while the client is on its way.
    await ConnectionScope.run(() => void (asked = connection.query('SELECT 1 AS one')));
    expect((await asked).rows).toEqual([{ one: 1 }]);
    expect(checkedOut()).toBe(0);
  });

  it('refuses the raw client of a getClient() whose scope ended before it came, and takes it back', async () => {
    let asked: Promise<unknown> = Promise.resolve();
    await ConnectionScope.run(() => void (asked = connection.getClient()));
    await expect(asked).rejects.toBeInstanceOf(ConnectionScopeClosedError);
    expect(checkedOut()).toBe(0);
  });
});

describe('shutdown', () => {
  let db: TestDatabase;
  beforeAll(async () => (db = await createTestDatabase('shutdown')));
  afterAll(() => db?.drop());

  async function start(drainTimeoutMillis: number): Promise<{ app: INestApplicationContext; connection: PoolConnection; pool: Pool }> {
    const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot({ ...db.options, drainTimeoutMillis })] }).compile();
    moduleRef.useLogger(false);
    const app = await moduleRef.init();
    return { app, connection: app.get(getConnectionToken()), pool: app.get(getPoolToken()) };
  }

  it('refuses new clients, waits for the checked-out one, then ends the pool', async () => {
    const { app, connection, pool } = await start(10_000);
    const job = await holdClient(connection, async () => (await connection.query<{ one: number }>('SELECT 1 AS one')).rows[0].one);
    let closed = false;
    const closing = app.close().then(() => (closed = true));
    await waitFor(async () => pool.ending || undefined, 'the shutdown to reach the pool');
    await expect(ConnectionScope.run(() => connection.query('SELECT 1'))).rejects.toBeInstanceOf(PoolClosedError);
    expect(closed).toBe(false);
    await expect(job.release()).resolves.toBe(1);
    await closing;
    expect(pool.ended).toBe(true);
  });

  it('closes connections still checked out after the drain timeout', async () => {
    const { app, connection, pool } = await start(50);
    let jobHasClient!: () => void;
    const clientHeld = new Promise<void>((resolve) => (jobHasClient = resolve));
    const stuck = ConnectionScope.run(async () => {
      await connection.query('SELECT 1');
      jobHasClient();
      await connection.query('SELECT pg_sleep(30)');
    });
    await clientHeld;
    // The job fails while close() still runs (it waits for the query's cancel request to go out).
    const stuckFails = expect(stuck).rejects.toThrow();
    await app.close();
    expect(pool.ended).toBe(true);
    await stuckFails;
  });
});
