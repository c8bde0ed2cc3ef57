import { Controller, Get, Param, type INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import pg, { type Pool, type PoolClient } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import Cursor from 'pg-cursor';
import request from 'supertest';
import { ClientReleasedError, getPoolToken, InjectConnection, InjectPool, PoolConnection, PoolModule } from '../lib/index.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { ADAPTERS, type AdapterName } from './support/http-app.js';

// What a pg user habitually does with a pooled client, done to the raw client of a request
// (`getClient()`), on a pool of ONE connection: every request after it borrows that same
// connection (or, where the habit closed it, a new one), so what the habit left behind shows.

const STATE = `SELECT pg_backend_pid() AS pid,
  (SELECT count(*)::int FROM pg_listening_channels()) AS channels,
  now() = statement_timestamp() AS "outsideTransaction"`;

interface ConnectionState {
  pid: number;
  channels: number;
  outsideTransaction: boolean;
  notificationListeners: number;
  errorListeners: number;
}

/** Where a request leaves what it means to outlive it, as careless code does. */
const departed = { notifications: 0, client: undefined as PoolClient | undefined };
/** Opened by the test while /hold's request holds the connection. */
const held = { holding: new Deferred(), resume: new Deferred() };

@Controller()
class HabitsController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    @InjectPool() private readonly pool: Pool,
  ) {}

  /** What the connection a request gets carries: its backend, channels, transaction and listeners. */
  @Get('state')
  async state(): Promise<ConnectionState> {
    const client = await this.connection.getClient();
    const { rows } = await client.query<Omit<ConnectionState, 'notificationListeners' | 'errorListeners'>>(STATE);
    return { ...rows[0], notificationListeners: client.listenerCount('notification'), errorListeners: client.listenerCount('error') };
  }

  @Get('release-in-finally')
  async releaseInFinally(): Promise<{ pid: number; idleAfterRelease: number; pidAfter: number }> {
    const client = await this.connection.getClient();
    let pid: number;
    try {
      pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    } finally {
      client.release();
    }
    client.release(); // twice, as code with two finally blocks does
    const idleAfterRelease = this.pool.idleCount;
    // The hold ended: on a pool of one, the request's next query borrows the connection again.
    const pidAfter = (await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    return { pid, idleAfterRelease, pidAfter };
  }

  @Get('release-with/:how')
  async releaseWith(@Param('how') how: string): Promise<{ pid: number }> {
    const client = await this.connection.getClient();
    const { pid } = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0];
    if (how === 'end') await client.end();
    else client.release(how === 'true' ? true : new Error('the application found the connection unusable'));
    client.release();
    return { pid };
  }

  @Get('listeners')
  async listeners(): Promise<{ pid: number }> {
    const client = await this.connection.getClient();
    client.on('error', () => undefined);
    client.once('error', () => undefined);
    client.on('notification', () => departed.notifications++);
    return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0];
  }

  @Get('listen/:via')
  async listen(@Param('via') via: string): Promise<{ pid: number }> {
    const client = await this.connection.getClient();
    client.on('notification', () => departed.notifications++);
    if (via === 'raw') await client.query('LISTEN habits');
    else await this.connection.query('SELECT 1; LISTEN habits');
    return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0];
  }

  /** A cursor read once and never closed. */
  @Get('cursor')
  async cursor(): Promise<{ pid: number; rows: number }> {
    const client = await this.connection.getClient();
    const { pid } = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0];
    const cursor = client.query(new Cursor('SELECT generate_series(1, 100000) AS n'));
    const rows = await cursor.read(10);
    return { pid, rows: rows.length };
  }

  /** A COPY FROM STDIN begun and never finished. */
  @Get('copy')
  async copy(): Promise<{ pid: number }> {
    const client = await this.connection.getClient();
    const { pid } = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0];
    const stream = client.query(copyFrom('COPY items (label) FROM STDIN'));
    stream.on('error', () => undefined);
    await new Promise<void>((resolve) => stream.write('half-copied\n', () => resolve()));
    return { pid };
  }

  /** A query sent on the raw client and not awaited. */
  @Get('unawaited')
  async unawaited(): Promise<{ pid: number }> {
    const client = await this.connection.getClient();
    const { pid } = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0];
    client.query('SELECT pg_sleep(0.3)').catch(() => undefined);
    return { pid };
  }

  /** Keeps the raw client past the request, as a module-level cache would. */
  @Get('keep')
  async keep(): Promise<{ pid: number }> {
    departed.client = await this.connection.getClient();
    return (await departed.client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0];
  }

  /** Holds the connection, in a transaction, until the test resumes it. */
  @Get('hold')
  async hold(): Promise<{ pid: number; count: number }> {
    return this.connection.transaction(async () => {
      await this.connection.query("INSERT INTO items (label) VALUES ('held')");
      held.holding.resolve();
      await held.resume.promise;
      const { rows } = await this.connection.query<{ pid: number; count: number }>(
        "SELECT pg_backend_pid() AS pid, count(*)::int AS count FROM items WHERE label = 'held'",
      );
      await this.connection.query("DELETE FROM items WHERE label = 'held'");
      return rows[0];
    });
  }

  /** release() inside a transaction of the module: the transaction keeps its client to its end. */
  @Get('release-in-transaction')
  async releaseInTransaction(): Promise<{ labels: string[] }> {
    await this.connection.transaction(async () => {
      const client = await this.connection.getClient();
      try {
        await client.query("INSERT INTO items (label) VALUES ('raw')");
      } finally {
        client.release();
      }
      await this.connection.query("INSERT INTO items (label) VALUES ('after release')");
    });
    const { rows } = await this.pool.query<{ label: string }>("SELECT label FROM items WHERE label IN ('raw', 'after release') ORDER BY id");
    return { labels: rows.map((row) => row.label) };
  }
}

describe.each(ADAPTERS)('the raw client in a pg user’s hands (%s)', (adapter: AdapterName) => {
  const logger = new CapturingLogger();
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;
  let baseline: ConnectionState;

  beforeAll(async () => {
    db = await createTestDatabase(`habits_${adapter}`);
    await db.query('CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL)');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 1, application_name: `npp-habits-${adapter}` })],
      controllers: [HabitsController],
    })
      .setLogger(logger)
      .compile();
    app = moduleRef.createNestApplication(adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter());
    app.useLogger(logger);
    await app.init();
    if (adapter === 'fastify') await app.getHttpAdapter().getInstance().ready();
    pool = app.get(getPoolToken());
    baseline = await state();
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  async function get<T>(path: string): Promise<T> {
    const response = await request(app.getHttpServer()).get(path);
    expect(response.status).toBe(200);
    return response.body as T;
  }

  const state = (): Promise<ConnectionState> => get<ConnectionState>('/state');

  /** Waits until backend `pid` is gone from the server: its connection was closed, not reused. */
  const closed = (pid: number): Promise<true> =>
    waitFor(async () => {
      const { rows } = await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      return rows.length === 0 ? true : undefined;
    }, `backend ${pid} to end`);

  it('release() in finally ends the hold at once; a second release() does nothing', async () => {
    const { pid, idleAfterRelease, pidAfter } = await get<{ pid: number; idleAfterRelease: number; pidAfter: number }>('/release-in-finally');
    expect(idleAfterRelease).toBe(1);
    expect(pidAfter).toBe(pid);
    const next = await state();
    expect(next).toEqual(baseline);
    expect(pool.totalCount - pool.idleCount).toBe(0);
  });

  it.each(['true', 'error', 'end'])('release(%s) closes the connection: the next request gets a new one', async (how) => {
    const { pid } = await get<{ pid: number }>(`/release-with/${how}`);
    await closed(pid);
    const next = await state();
    expect(next.pid).not.toBe(pid);
    expect({ ...next, pid: 0 }).toEqual({ ...baseline, pid: 0 });
    baseline = next;
  });

  it('listeners the request added to the raw client are gone when the next request borrows it', async () => {
    const { pid } = await get<{ pid: number }>('/listeners');
    const next = await state();
    expect(next.pid).toBe(pid);
    expect(next.notificationListeners).toBe(baseline.notificationListeners);
    expect(next.errorListeners).toBe(baseline.errorListeners);
  });

  it.each(['raw', 'query'])('LISTEN (through %s) is cleared before the next borrower, and the departed listener hears nothing', async (via) => {
    departed.notifications = 0;
    const { pid } = await get<{ pid: number }>(`/listen/${via}`);
    const next = await state();
    expect(next.pid).toBe(pid);
    expect(next.channels).toBe(0);
    expect(next.notificationListeners).toBe(baseline.notificationListeners);
    // A NOTIFY that a listener elsewhere hears does not reach the request that left.
    const control = new pg.Client(db.options);
    await control.connect();
    try {
      await control.query('LISTEN habits');
      const heard = new Promise((resolve) => control.once('notification', resolve));
      await db.query("NOTIFY habits, 'after the request'");
      await heard;
      await state(); // a round trip on the pooled connection, where a notification would have been read
      expect(departed.notifications).toBe(0);
    } finally {
      await control.end();
    }
  });

  it.each([
    ['a cursor', 'cursor'],
    ['a COPY', 'copy'],
    ['a query not awaited', 'unawaited'],
  ])('%s left open at the end of the request closes its connection, not handed on mid-statement', async (_, habit) => {
    const since = logger.messages.length;
    const { pid } = await get<{ pid: number }>(`/${habit}`);
    await closed(pid);
    const next = await state();
    expect(next.pid).not.toBe(pid);
    expect({ ...next, pid: 0 }).toEqual({ ...baseline, pid: 0 });
    baseline = next;
    expect(logger.messages.slice(since).filter((m) => /still open as the hold ended/.test(m))).toHaveLength(1);
    const { rows } = await db.query("SELECT count(*)::int AS n FROM items WHERE label = 'half-copied'");
    expect(rows[0].n).toBe(0);
  });

  it('a raw client kept past its request runs nothing and releases nothing on the next borrower’s connection', async () => {
    const { pid } = await get<{ pid: number }>('/keep');
    const kept = departed.client!;
    held.holding = new Deferred();
    held.resume = new Deferred();
    // The next request holds the same connection, mid-transaction, while the stale reference is used.
    const holding = get<{ pid: number; count: number }>('/hold');
    await held.holding.promise;
    await expect(kept.query('SELECT 1')).rejects.toBeInstanceOf(ClientReleasedError);
    expect(() => kept.release()).not.toThrow();
    expect(() => kept.release(true)).not.toThrow();
    kept.on('notification', () => departed.notifications++);
    held.resume.resolve();
    expect(await holding).toEqual({ pid, count: 1 });
    expect(await state()).toEqual(baseline);
  });

  it('release() inside a transaction of the module leaves the transaction its client until it commits', async () => {
    expect(await get<{ labels: string[] }>('/release-in-transaction')).toEqual({ labels: ['raw', 'after release'] });
    expect(await state()).toEqual(baseline);
  });
});
