import { Controller, Get, Param, type INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import request from 'supertest';
import { InjectConnection, PoolConnection, PoolModule } from '../lib/index.js';
import { adminQuery, createTestDatabase, type TestDatabase } from './support/database.js';

// Session state a request leaves on its connection, on a pool of ONE: the next request borrows
// the same backend, so whatever was not undone would show in what it observes.

const ROLE = `npp_session_role_${randomBytes(3).toString('hex')}`;

const OBSERVE = `SELECT pg_backend_pid() AS pid,
  coalesce(current_setting('app.tenant', true), '') AS tenant,
  current_setting('search_path') AS "searchPath",
  current_user AS "user",
  to_regclass('pg_temp.npp_scratch') IS NOT NULL AS "temporaryTable",
  (SELECT count(*)::int FROM pg_prepared_statements WHERE name = 'npp_statement') AS prepared,
  (SELECT count(*)::int FROM pg_listening_channels()) AS channels,
  (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS "advisoryLocks",
  (SELECT count(*)::int FROM pg_cursors) AS cursors`;

type Observed = Record<string, unknown> & { pid: number };

/** Each kind: the statement a handler runs, and the field of OBSERVE it changes. */
const KINDS: Record<string, [statement: string, field: string]> = {
  'set_config(…, false)': ["SELECT set_config('app.tenant', 'tenant-a', false)", 'tenant'],
  'SET search_path': ['SET search_path TO npp_elsewhere, public', 'searchPath'],
  'SET ROLE': [`SET ROLE ${ROLE}`, 'user'],
  'a temporary table': ['CREATE TEMP TABLE npp_scratch (n int)', 'temporaryTable'],
  PREPARE: ['PREPARE npp_statement AS SELECT 1', 'prepared'],
  LISTEN: ['LISTEN npp_channel', 'channels'],
  'a session advisory lock': ['SELECT pg_advisory_lock(4242)', 'advisoryLocks'],
  'a cursor WITH HOLD': ['DECLARE npp_cursor CURSOR WITH HOLD FOR SELECT 1', 'cursors'],
};

/** Every statement the pool's connections were sent, in order. */
const sent: string[] = [];
class RecordingClient extends pg.Client {
  override query(...args: unknown[]): never {
    const [input] = args as [string | { text?: string }];
    const text = typeof input === 'string' ? input : input?.text;
    if (text !== undefined) sent.push(text);
    return (super.query as (...args: unknown[]) => never)(...args);
  }
}

@Controller()
class SessionController {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Get('observe')
  async observe(): Promise<Observed> {
    return (await this.connection.query<Observed>(OBSERVE)).rows[0];
  }

  /** Changes the session, then observes it twice: the request keeps what it set for all its queries. */
  @Get('change/:kind')
  async change(@Param('kind') kind: string): Promise<Observed[]> {
    await this.connection.query(KINDS[kind][0]);
    return [await this.observe(), await this.observe()];
  }

  /** What ends with its transaction, and so needs no reset. */
  @Get('transaction-local')
  async transactionLocal(): Promise<Observed> {
    return this.connection.transaction(async () => {
      await this.connection.query("SELECT set_config('app.tenant', 'tenant-b', true)");
      await this.connection.query("SET LOCAL search_path TO npp_elsewhere, public");
      return this.observe();
    });
  }

  /** A statement node-postgres prepares under a name once per connection, and then only binds. */
  @Get('named')
  async named(): Promise<{ one: number }> {
    return (await this.connection.query<{ one: number }>({ name: 'npp_named', text: 'SELECT 1 AS one' })).rows[0];
  }

  @Get('raw-set-role')
  async rawSetRole(): Promise<Observed> {
    const client = await this.connection.getClient();
    await client.query(`SET ROLE ${ROLE}`);
    return this.observe();
  }
}

// With clientHold 'query' a request holds no client between its queries until it changes the
// session: from then on it is pinned to that client, so the same guarantees hold in both modes.
describe.each(['request', 'query'] as const)('session state a request leaves on its connection (clientHold %s)', (clientHold) => {
  let db: TestDatabase;
  let app: INestApplication;
  let baseline: Observed;

  beforeAll(async () => {
    db = await createTestDatabase(`session_state_${clientHold}`);
    await adminQuery(`CREATE ROLE ${ROLE} NOLOGIN`);
    await db.query(`GRANT ${ROLE} TO current_user`);
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 1, Client: RecordingClient, clientHold })],
      controllers: [SessionController],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    baseline = await observe();
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
    await adminQuery(`DROP ROLE IF EXISTS ${ROLE}`);
  });

  async function get<T>(path: string): Promise<T> {
    const response = await request(app.getHttpServer()).get(path);
    expect(response.status).toBe(200);
    return response.body as T;
  }
  const observe = (): Promise<Observed> => get<Observed>('/observe');

  it.each(Object.keys(KINDS))('%s: the request keeps it for all its queries, the next request on the backend sees none of it', async (kind) => {
    const field = KINDS[kind][1];
    const [first, second] = await get<Observed[]>(`/change/${encodeURIComponent(kind)}`);
    expect(first[field]).not.toEqual(baseline[field]);
    expect(second).toEqual(first);
    const next = await observe();
    expect(next.pid).toBe(baseline.pid);
    expect(next).toEqual(baseline);
  });

  it('a SET ROLE on the raw client is undone too', async () => {
    expect((await get<Observed>('/raw-set-role')).user).toBe(ROLE);
    expect(await observe()).toEqual(baseline);
  });

  it('undoing a PREPARE keeps node-postgres’ own named statements usable', async () => {
    expect(await get('/named')).toEqual({ one: 1 });
    await get(`/change/PREPARE`);
    expect(await get('/named')).toEqual({ one: 1 });
    expect(await observe()).toEqual(baseline);
  });

  it('requests that changed nothing, or only their transaction, pay nothing: no reset is sent', async () => {
    const since = sent.length;
    await observe();
    const local = await get<Observed>('/transaction-local');
    expect(local).toMatchObject({ tenant: 'tenant-b', searchPath: 'npp_elsewhere, public' });
    await observe();
    expect(sent.slice(since).filter((text) => /RESET|UNLISTEN|DEALLOCATE|DISCARD|CLOSE ALL|unlock_all/i.test(text))).toEqual([]);
    expect(await observe()).toEqual(baseline);
  });

  it('a request that changed the session sends exactly what undoes it, in one statement', async () => {
    const since = sent.length;
    await get(`/change/${encodeURIComponent('SET search_path')}`);
    await observe();
    expect(sent.slice(since).filter((text) => /RESET|UNLISTEN|DEALLOCATE|DISCARD|CLOSE ALL|unlock_all/i.test(text))).toEqual([
      'SET SESSION AUTHORIZATION DEFAULT; RESET ALL',
    ]);
  });
});
