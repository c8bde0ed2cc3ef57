import { Controller, Get, Injectable, Query, UseGuards, type INestApplication } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import type { Pool } from 'pg';
import supertest from 'supertest';
import {
  ConnectionScope,
  ConnectionScopeClosedError,
  getConnectionToken,
  getPoolToken,
  InjectConnection,
  InvalidRequestSettingsError,
  NoConnectionScopeError,
  PoolConnection,
  PoolModule,
  SessionStateError,
  setRequestDeadline,
  setRequestSettings,
  Transactional,
  type PoolModuleOptions,
} from '../lib/index.js';
import { TenantGuard, TENANT_ROLE } from './examples/tenant-guard.js';
import { adminQuery, createTestDatabase, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { holdClient } from './support/hold-client.js';
import { createHttpApp, listeningPort } from './support/http-app.js';
import { startPgBouncer, type Login, type PgBouncer } from './support/pgbouncer.js';
import { whenAvailable } from './support/services.js';
import { clientsBack, expectNoOpenTransaction } from './support/transactions.js';

const schema = readFileSync(new URL('./examples/tenant-schema.sql', import.meta.url), 'utf8');
const region = (name: string): string => new RegExp(`-- #region ${name}\n([\\s\\S]*?)-- #endregion ${name}`).exec(schema)![1];

const TENANTS = ['A', 'B'];
/** The application's login: neither a superuser nor the tables' owner, so row-level security applies to it too. */
const APP_LOGIN: Login = { user: 'npp_rls_app', password: 'npp-rls-app-secret' };

/** `options` with the application's login in place of the server's user. */
function asAppLogin(options: PoolModuleOptions): PoolModuleOptions {
  if (!options.connectionString) return { ...options, user: APP_LOGIN.user, password: APP_LOGIN.password };
  const url = new URL(options.connectionString);
  url.username = APP_LOGIN.user;
  url.password = APP_LOGIN.password;
  return { ...options, connectionString: url.toString() };
}
const ROWS_PER_TENANT = 3;
const SEEN = "SELECT array(SELECT tenant_id FROM notes ORDER BY id) AS tenants, current_setting('app.tenant_id', true) AS setting, current_user AS role, pg_backend_pid() AS pid";

/** What one statement of a request saw: the tenants of the rows RLS let through, the setting, the role, the backend. */
interface Seen {
  tenants: string[];
  setting: string | null;
  role: string;
  pid: number;
}

@Injectable()
class Audit {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Transactional({ propagation: 'requiresNew' })
  async separately(): Promise<Seen> {
    return (await this.connection.query<Seen>(SEEN)).rows[0];
  }
}

/** Outcomes of work a handler left running past its request. */
class Late {
  /** Opened by the test once the request has been answered. */
  go = new Deferred();
  outcome = new Deferred<unknown>();
}

@Controller('tenant')
@UseGuards(TenantGuard)
class TenantController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    @InjectConnection('default', { replica: true }) private readonly replica: PoolConnection,
    private readonly audit: Audit,
    private readonly late: Late,
  ) {}

  private async seen(connection = this.connection): Promise<Seen> {
    return (await connection.query<Seen>(SEEN)).rows[0];
  }

  @Get('notes')
  notes(): Promise<Seen> {
    return this.seen();
  }

  /** Two statements with other work between them: with `clientHold: 'query'`, two borrows. */
  @Get('two')
  async two(): Promise<Seen[]> {
    const first = await this.seen();
    await new Promise<void>((resolve) => setImmediate(resolve));
    return [first, await this.seen()];
  }

  @Get('transaction')
  transaction(): Promise<Seen[]> {
    return this.connection.transaction(async (transaction) => {
      const outer = (await transaction.query<Seen>(SEEN)).rows[0];
      const inSavepoint = await this.connection.transaction(async (savepoint) => (await savepoint.query<Seen>(SEEN)).rows[0]);
      return [outer, inSavepoint];
    });
  }

  /** A transaction on a client of its own inside the request's (not under load: each request holds two clients). */
  @Get('requires-new')
  requiresNew(): Promise<Seen[]> {
    return this.connection.transaction(async (transaction) => [(await transaction.query<Seen>(SEEN)).rows[0], await this.audit.separately()]);
  }

  @Get('raw-begin')
  async rawBegin(): Promise<Seen[]> {
    await this.connection.query('BEGIN');
    const seen = [await this.seen(), await this.seen()];
    await this.connection.query('COMMIT');
    return seen;
  }

  @Get('raw-client')
  async rawClient(): Promise<Seen> {
    const client = await this.connection.getClient();
    try {
      return (await client.query<Seen>(SEEN)).rows[0];
    } finally {
      client.release();
    }
  }

  @Get('replica')
  fromReplica(): Promise<Seen> {
    return this.seen(this.replica);
  }

  @Get('write')
  async write(): Promise<string> {
    const { rows } = await this.connection.query<{ id: string; tenant_id: string }>("INSERT INTO notes (body) VALUES ('written') RETURNING id, tenant_id");
    await this.connection.query('DELETE FROM notes WHERE id = $1', [rows[0].id]);
    return rows[0].tenant_id;
  }

  /** Sleeps `ms` on the server first, under a deadline of `deadline` ms if given. */
  @Get('slow')
  async slow(@Query('ms') ms: string, @Query('deadline') deadline?: string): Promise<Seen> {
    if (deadline) setRequestDeadline(Number(deadline));
    await this.connection.query('SELECT pg_sleep($1)', [Number(ms) / 1000]);
    return this.seen();
  }

  /** Starts work it does not await: it ends after the request. */
  @Get('unawaited')
  unawaited(@Query('inRun') inRun?: string): string {
    const work = async (): Promise<Seen> => {
      await this.late.go.promise;
      return this.seen();
    };
    const started = inRun ? ConnectionScope.run(work) : work();
    started.then(
      (seen) => this.late.outcome.resolve(seen),
      (error: unknown) => this.late.outcome.resolve(error),
    );
    return 'started';
  }

  /** Sends a query it does not await: asked for before the request ends, its client may come after. */
  @Get('fire-and-forget')
  fireAndForget(): string {
    this.seen().then(
      (seen) => this.late.outcome.resolve(seen),
      (error: unknown) => this.late.outcome.resolve(error),
    );
    return 'sent';
  }

  /** Changes the tenant after a first query: the held client gets the new one. */
  @Get('switch')
  async switchTenant(): Promise<Seen[]> {
    const before = await this.seen();
    // Without the role: a later call adds to the earlier settings, the role stays.
    setRequestSettings({ 'app.tenant_id': before.setting === 'A' ? 'B' : 'A' });
    return [before, await this.seen()];
  }

  @Get('set-inside-transaction')
  setInsideTransaction(): Promise<string> {
    return this.connection.transaction(async () => {
      try {
        setRequestSettings({ 'app.tenant_id': 'B' });
        return 'set';
      } catch (error) {
        return (error as Error).name;
      }
    });
  }

  /** A session setting of the handler's own, where the pooler cannot keep one. */
  @Get('session-set-config')
  async sessionSetConfig(): Promise<string> {
    try {
      await this.connection.query("SELECT set_config('app.tenant_id', 'B', false)");
      return 'ran';
    } catch (error) {
      return (error as Error).name;
    }
  }
}

/** The same statements without the guard: no settings. */
@Controller('public')
class PublicController {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Get('notes')
  async notes(): Promise<Seen> {
    return (await this.connection.query<Seen>(SEEN)).rows[0];
  }

  @Get('bad-role')
  async badRole(): Promise<string> {
    setRequestSettings({ 'app.tenant_id': 'A' }, { role: 'npp_no_such_role' });
    await this.connection.query('SELECT 1');
    return 'ran';
  }
}

/** Expects what a tenant's statement must see: its own rows only (and all of them), its setting, its role. */
function expectTenant(seen: Seen, tenant: string): void {
  expect(seen).toEqual({ tenants: expect.arrayContaining([tenant]), setting: tenant, role: TENANT_ROLE, pid: expect.any(Number) });
  expect(seen.tenants.filter((rowTenant) => rowTenant !== tenant)).toEqual([]);
  expect(seen.tenants.length).toBeGreaterThanOrEqual(ROWS_PER_TENANT);
}

/** Expects what a statement without settings must see through the policy: no row, no setting, the connection's own user. */
function expectNobody(seen: Seen, user: string): void {
  expect({ ...seen, setting: seen.setting || null }).toEqual({ tenants: [], setting: null, role: user, pid: expect.any(Number) });
}

describe('request settings (setRequestSettings) for row-level security', () => {
  const bouncerTest = whenAvailable('pgbouncer', 'request settings behind PgBouncer');
  let db: TestDatabase;
  let bouncer: PgBouncer | undefined;
  const user = APP_LOGIN.user;

  beforeAll(async () => {
    // Roles belong to the cluster, not to the suite's database: dropped again in afterAll.
    await adminQuery(`DROP ROLE IF EXISTS ${TENANT_ROLE}, ${APP_LOGIN.user}`);
    await adminQuery(`CREATE ROLE ${APP_LOGIN.user} LOGIN PASSWORD '${APP_LOGIN.password}'`);
    await adminQuery(region('role').replace('TO app;', `TO ${APP_LOGIN.user};`));
    db = await createTestDatabase('tenants');
    await db.query(region('rls'));
    for (const tenant of TENANTS) {
      await db.query(`INSERT INTO notes (tenant_id, body) SELECT $1, 'note ' || n FROM generate_series(1, ${ROWS_PER_TENANT}) AS n`, [tenant]);
    }
    bouncer = await startPgBouncer(6, [APP_LOGIN]).catch(() => undefined);
  });

  afterAll(async () => {
    await bouncer?.stop();
    await db?.drop();
    await adminQuery(`DROP ROLE IF EXISTS ${TENANT_ROLE}, ${APP_LOGIN.user}`);
  });

  const direct = (): PoolModuleOptions => asAppLogin(db.options);
  const bounced = (): PoolModuleOptions => ({ ...bouncer!.optionsFor(db.name, APP_LOGIN), transactionPooling: true });

  async function startApp(options: PoolModuleOptions): Promise<INestApplication> {
    return createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...options, replicas: options.transactionPooling ? undefined : [options] })],
        controllers: [TenantController, PublicController],
        providers: [Audit, Late],
      },
      'express',
    );
  }

  async function withApp(options: PoolModuleOptions, test: (app: INestApplication) => Promise<void>): Promise<void> {
    const app = await startApp(options);
    try {
      await test(app);
      await clientsBack(app.get<Pool>(getPoolToken()));
      await expectNoOpenTransaction(app.get<Pool>(getPoolToken()), db.name);
      await expectClean(app.get<Pool>(getPoolToken()));
    } finally {
      await app.close();
    }
  }

  /** Every connection of the pool, checked out at once: none carries a tenant's setting or role into the next borrower. */
  async function expectClean(pool: Pool): Promise<void> {
    const clients = await Promise.all(Array.from({ length: pool.totalCount }, () => pool.connect()));
    try {
      for (const client of clients) {
        const { rows } = await client.query<{ setting: string | null; role: string }>(
          "SELECT current_setting('app.tenant_id', true) AS setting, current_user AS role",
        );
        expect({ setting: rows[0].setting || null, role: rows[0].role }).toEqual({ setting: null, role: user });
      }
    } finally {
      for (const client of clients) client.release();
    }
  }

  const tenant = (app: INestApplication, path: string, who: string) => supertest(app.getHttpServer()).get(path).set('x-tenant', who);

  describe.each([
    ['held for the request', 'request' as const],
    ['held only while needed', 'query' as const],
  ])('directly, clients %s', (_label, clientHold) => {
    const options = (): PoolModuleOptions => ({ ...direct(), max: 1, clientHold });

    it('gives the request its settings and role, and the next borrower of the connection neither', async () => {
      await withApp(options(), async (app) => {
        const first = (await tenant(app, '/tenant/notes', 'A').expect(200)).body as Seen;
        expectTenant(first, 'A');
        const next = (await supertest(app.getHttpServer()).get('/public/notes').expect(200)).body as Seen;
        expectNobody(next, user);
        // One connection in the pool: the same backend, reset between the two.
        expect(next.pid).toBe(first.pid);
        expectTenant((await tenant(app, '/tenant/notes', 'B').expect(200)).body as Seen, 'B');
      });
    });

    it('gives them to every statement: after other work, in transactions, savepoints, requiresNew, a raw BEGIN, the raw client, a replica', async () => {
      await withApp({ ...options(), max: 2 }, async (app) => {
        for (const path of ['/tenant/two', '/tenant/transaction', '/tenant/requires-new', '/tenant/raw-begin']) {
          for (const seen of (await tenant(app, path, 'B').expect(200)).body as Seen[]) expectTenant(seen, 'B');
        }
        expectTenant((await tenant(app, '/tenant/raw-client', 'A').expect(200)).body as Seen, 'A');
        expectTenant((await tenant(app, '/tenant/replica', 'A').expect(200)).body as Seen, 'A');
        await tenant(app, '/tenant/write', 'B').expect(200, 'B');
      });
    });

    it('applies a later call to the client the request already holds', async () => {
      await withApp(options(), async (app) => {
        const [before, after] = (await tenant(app, '/tenant/switch', 'A').expect(200)).body as Seen[];
        expectTenant(before, 'A');
        expectTenant(after, 'B');
      });
    });

    it('refuses work that outlives the request, which would run without them; ConnectionScope.run() takes them along', async () => {
      await withApp(options(), async (app) => {
        const late = app.get(Late);
        await tenant(app, '/tenant/unawaited', 'A').expect(200, 'started');
        late.go.resolve();
        expect(await late.outcome.promise).toBeInstanceOf(ConnectionScopeClosedError);
        [late.go, late.outcome] = [new Deferred(), new Deferred()];
        await tenant(app, '/tenant/unawaited?inRun=1', 'A').expect(200, 'started');
        late.go.resolve();
        expectTenant((await late.outcome.promise) as Seen, 'A');
      });
    });

    it('runs a query asked for before the request ended, whose client came after, with the settings', async () => {
      await withApp(options(), async (app) => {
        const late = app.get(Late);
        late.outcome = new Deferred();
        // The pool's one client is held: the request's query waits for it past the request's end.
        const held = await holdClient(app.get<PoolConnection>(getConnectionToken()));
        await tenant(app, '/tenant/fire-and-forget', 'B').expect(200, 'sent');
        await held.release();
        expectTenant((await late.outcome.promise) as Seen, 'B');
      });
    });

    it('answers 500 with RequestSettingsFailedError when the server refuses them, and closes that connection', async () => {
      await withApp(options(), async (app) => {
        const pool = app.get<Pool>(getPoolToken());
        await supertest(app.getHttpServer()).get('/public/notes').expect(200);
        const before = (await supertest(app.getHttpServer()).get('/public/notes').expect(200)).body as Seen;
        await supertest(app.getHttpServer()).get('/public/bad-role').expect(500);
        await clientsBack(app.get<Pool>(getPoolToken()));
        const after = (await supertest(app.getHttpServer()).get('/public/notes').expect(200)).body as Seen;
        expect(after.pid).not.toBe(before.pid);
        expect(pool.totalCount).toBe(1);
      });
    });

    it('refuses to set them inside a transaction, where its rollback would undo them', async () => {
      await withApp(options(), async (app) => {
        await tenant(app, '/tenant/set-inside-transaction', 'A').expect(200, 'InvalidRequestSettingsError');
      });
    });
  });

  bouncerTest('behind PgBouncer in transaction mode: every statement carries them, inside a transaction of its own or the one it runs in', async () => {
    for (const clientHold of ['request', 'query'] as const) {
      await withApp({ ...bounced(), max: 2, clientHold }, async (app) => {
        expectTenant((await tenant(app, '/tenant/notes', 'A').expect(200)).body as Seen, 'A');
        expectNobody((await supertest(app.getHttpServer()).get('/public/notes').expect(200)).body as Seen, user);
        for (const path of ['/tenant/two', '/tenant/transaction', '/tenant/raw-begin']) {
          for (const seen of (await tenant(app, path, 'B').expect(200)).body as Seen[]) expectTenant(seen, 'B');
        }
        await tenant(app, '/tenant/write', 'A').expect(200, 'A');
        // A session-level set_config would stay on a server connection another client gets next.
        await tenant(app, '/tenant/session-set-config', 'A').expect(200, SessionStateError.name);
      });
    }
  });

  it('refuses invalid settings with InvalidRequestSettingsError, and a call outside a request with NoConnectionScopeError', async () => {
    const invalid: Array<[Record<string, unknown>, { role?: unknown }?]> = [
      [{ 'app.tenant-id': 'A' }],
      [{ "app.x'; DROP TABLE notes; --": 'A' }],
      [{ 'app.tenant_id': 42 }],
      [{ 'app.tenant_id': 'A\0' }],
      [{ role: 'postgres' }],
      [{}],
      [{ 'app.tenant_id': 'A' }, { role: '' }],
    ];
    await ConnectionScope.run(async () => {
      for (const [settings, settingsOptions] of invalid) {
        expect(() => setRequestSettings(settings as Record<string, string>, settingsOptions as { role?: string })).toThrow(InvalidRequestSettingsError);
      }
    });
    expect(() => setRequestSettings({ 'app.tenant_id': 'A' })).toThrow(NoConnectionScopeError);
  });

  it('passes values as they are: quotes and backslashes reach the server unchanged, on the session and in a transaction', async () => {
    const value = `O'Brien \\ "quoted" $1 ; --`;
    for (const transactionPooling of bouncer ? [false, true] : [false]) {
      const app = await createHttpApp({ imports: [PoolModule.forRoot({ ...(transactionPooling ? bounced() : direct()), max: 1 })] }, 'express');
      try {
        const connection = app.get<PoolConnection>(getConnectionToken());
        const seen = await ConnectionScope.run(async () => {
          setRequestSettings({ 'app.tenant_id': value });
          return [
            (await connection.query<{ setting: string }>("SELECT current_setting('app.tenant_id') AS setting")).rows[0].setting,
            await connection.transaction(async (t) => (await t.query<{ setting: string }>("SELECT current_setting('app.tenant_id') AS setting")).rows[0].setting),
          ];
        });
        expect(seen).toEqual([value, value]);
      } finally {
        await app.close();
      }
    }
  });

  describe('under load: 2 tenants × 20 concurrent clients, with hang-ups and deadlines mixed in', () => {
    const REQUESTS = Number(process.env.NPP_RLS_REQUESTS ?? 10_000);

    /** Runs the mixed load against both hold modes at once and checks every answer; returns how many requests were made. */
    async function runLoad(options: PoolModuleOptions): Promise<{ requests: number; crossed: number; failures: string[]; byStatus: Record<string, number> }> {
      const apps = await Promise.all((['request', 'query'] as const).map((clientHold) => startApp({ ...options, max: 5, clientHold })));
      const agent = new Agent({ keepAlive: true, maxSockets: 64 });
      const ports = await Promise.all(apps.map((app) => listeningPort(app)));
      const byStatus: Record<string, number> = {};
      let crossed = 0;
      let made = 0;
      const failures: string[] = [];
      const check = (who: string | undefined, seen: Seen | Seen[] | string): void => {
        for (const one of Array.isArray(seen) ? seen : [seen]) {
          if (typeof one === 'string') {
            if (one !== who) crossed++;
            continue;
          }
          if (one.tenants.some((rowTenant) => rowTenant !== who)) crossed++;
          if (who === undefined ? one.setting || one.role !== user : one.setting !== who || one.role !== TENANT_ROLE) failures.push(`${who}: ${JSON.stringify(one)}`);
        }
      };
      const client = async (who: string | undefined): Promise<void> => {
        while (made < REQUESTS) {
          made++;
          const port = ports[made % ports.length];
          const dice = Math.random();
          if (who === undefined) {
            const answer = await get(agent, port, '/public/notes', undefined);
            count(byStatus, answer.status);
            if (answer.status === 200) check(who, answer.body as Seen);
          } else if (dice < 0.05) {
            // A client that gives up while its statement runs (or before it starts, or after it ended).
            count(byStatus, await hangUp(port, `/tenant/slow?ms=${Math.floor(Math.random() * 20)}`, who, Math.random() * 15));
          } else {
            const path =
              dice < 0.1
                ? `/tenant/slow?ms=${Math.floor(Math.random() * 10)}&deadline=${1 + Math.floor(Math.random() * 8)}`
                : (['/tenant/notes', '/tenant/notes', '/tenant/notes', '/tenant/two', '/tenant/transaction', '/tenant/raw-begin', '/tenant/write'] as const)[
                    Math.floor(Math.random() * 7)
                  ];
            const answer = await get(agent, port, path, who);
            count(byStatus, answer.status);
            if (answer.status === 200) check(who, answer.body as Seen);
            else if (answer.status !== 504 || !path.startsWith('/tenant/slow')) failures.push(`${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
          }
        }
      };
      try {
        await Promise.all([...TENANTS.flatMap((who) => Array.from({ length: 20 }, () => client(who))), client(undefined), client(undefined)]);
        agent.destroy();
        for (const app of apps) {
          await clientsBack(app.get<Pool>(getPoolToken()));
          await expectNoOpenTransaction(app.get<Pool>(getPoolToken()), db.name);
          await expectClean(app.get<Pool>(getPoolToken()));
        }
        return { requests: made, crossed, failures: failures.slice(0, 5), byStatus };
      } finally {
        agent.destroy();
        await Promise.all(apps.map((app) => app.close()));
      }
    }

    it('directly: no answer holds another tenant\'s row, and one without settings holds none', async () => {
      const { requests, crossed, failures, byStatus } = await runLoad(direct());
      expect(crossed).toBe(0);
      expect(failures).toEqual([]);
      expect(requests).toBeGreaterThanOrEqual(REQUESTS);
      expect(byStatus).toEqual(expect.objectContaining({ 200: expect.any(Number), 504: expect.any(Number), 'hung up': expect.any(Number) }));
    }, 180_000);

    bouncerTest(
      'behind PgBouncer in transaction mode: no answer holds another tenant\'s row, and one without settings holds none',
      async () => {
        const { requests, crossed, failures, byStatus } = await runLoad(bounced());
        expect(crossed).toBe(0);
        expect(failures).toEqual([]);
        expect(requests).toBeGreaterThanOrEqual(REQUESTS);
        expect(byStatus).toEqual(expect.objectContaining({ 200: expect.any(Number), 504: expect.any(Number), 'hung up': expect.any(Number) }));
      },
      180_000,
    );
  });
});

function count(byStatus: Record<string, number>, status: number | string): void {
  byStatus[status] = (byStatus[status] ?? 0) + 1;
}


function get(agent: Agent, port: number, path: string, tenant: string | undefined): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port, path, agent, headers: tenant ? { 'x-tenant': tenant } : {} }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve({ status: response.statusCode!, body: text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text }));
    });
    request.on('error', reject);
    request.end();
  });
}

/** Sends a request on a connection of its own and closes it after `afterMs` (or when the answer comes first). */
function hangUp(port: number, path: string, tenant: string, afterMs: number): Promise<number | string> {
  return new Promise((resolve) => {
    const request = httpRequest({ host: '127.0.0.1', port, path, agent: false, headers: { 'x-tenant': tenant } }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode!));
    });
    request.on('error', () => resolve('hung up'));
    request.end();
    setTimeout(() => {
      request.destroy();
      resolve('hung up');
    }, afterMs).unref();
  });
}
