import { Controller, Get, Injectable, Param, UseGuards, type CanActivate, type ExecutionContext, type INestApplication } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { Pool } from 'pg';
import supertest from 'supertest';
import {
  ConnectionScope,
  DeadlineExceededError,
  getConnectionToken,
  getPoolToken,
  InjectConnection,
  InvalidDeadlineError,
  NoConnectionScopeError,
  PoolConnection,
  PoolModule,
  RequestDeadline,
  setRequestDeadline,
} from '../lib/index.js';
import { backendStates, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { holdClient } from './support/hold-client.js';
import { ADAPTERS, createHttpApp } from './support/http-app.js';
import { expectNoOpenTransaction } from './support/transactions.js';

const BUDGET_MS = 400;
const SLEEP = '/* deadline sleep */';

/** Sets the request's deadline from the `x-request-timeout-ms` header, as an application that knows its caller's budget would. */
@Injectable()
class TimeoutHeaderGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const header = context.switchToHttp().getRequest<IncomingMessage>().headers['x-request-timeout-ms'];
    if (typeof header === 'string') setRequestDeadline(Number(header));
    return true;
  }
}

/** What a handler met when its deadline passed: its running query's error, then a later query's. */
class Outcomes {
  running: unknown;
  later: unknown;
  started = new Deferred();
}

@Controller()
class DeadlineController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly outcomes: Outcomes,
  ) {}

  /** Sleeps on the server for `s` seconds: longer than every deadline of these tests. */
  @Get('sleep/:s')
  async sleep(@Param('s') s: string): Promise<string> {
    await this.connection.query(`SELECT pg_sleep($1) ${SLEEP}`, [Number(s)]);
    return 'slept';
  }

  @Get('decorated/:s')
  @RequestDeadline(BUDGET_MS)
  decorated(@Param('s') s: string): Promise<string> {
    return this.sleep(s);
  }

  @Get('patient/:s')
  @RequestDeadline(20 * BUDGET_MS)
  patient(@Param('s') s: string): Promise<string> {
    return this.sleep(s);
  }

  @Get('header/:s')
  @UseGuards(TimeoutHeaderGuard)
  fromHeader(@Param('s') s: string): Promise<string> {
    return this.sleep(s);
  }

  /** A transaction that writes, then outlives its deadline. */
  @Get('transaction')
  @RequestDeadline(BUDGET_MS)
  async transaction(): Promise<string> {
    await this.connection.transaction(async (tx) => {
      await tx.query("INSERT INTO ledger (note) VALUES ('cut by its deadline')");
      await tx.query(`SELECT pg_sleep(30) ${SLEEP}`);
    });
    return 'committed';
  }

  /** Catches the cancelled query's error and goes on with another query, as a handler with a fallback would. */
  @Get('after')
  @RequestDeadline(BUDGET_MS)
  async after(): Promise<string> {
    await this.connection.query('SELECT 1');
    this.outcomes.started.resolve();
    this.outcomes.running = await this.connection.query(`SELECT pg_sleep(30) ${SLEEP}`).catch((error: unknown) => error);
    this.outcomes.later = await this.connection.query('SELECT 1').catch((error: unknown) => error);
    return 'went on';
  }

  @Get('pid')
  async pid(): Promise<number> {
    return (await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  }
}

async function sleepers(database: string): Promise<number> {
  return (await backendStates(database)).filter((b) => b.state === 'active' && b.query.includes(SLEEP)).length;
}

describe.each(ADAPTERS)('request deadlines (%s)', (adapter) => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;
  const outcomes = new Outcomes();

  beforeAll(async () => {
    db = await createTestDatabase('deadline');
    await db.query('CREATE TABLE ledger (id serial PRIMARY KEY, note text)');
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...db.options, max: 2, requestDeadlineMillis: 2 * BUDGET_MS })],
        controllers: [DeadlineController],
        providers: [{ provide: Outcomes, useValue: outcomes }],
      },
      adapter,
    );
    pool = app.get<Pool>(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  afterEach(() => waitFor(async () => (pool.totalCount === pool.idleCount && pool.waitingCount === 0 ? true : undefined), 'every client back'));

  it("answers 504 at the datasource's requestDeadlineMillis, its query already stopped on the server", async () => {
    const started = performance.now();
    const response = await supertest(app.getHttpServer()).get('/sleep/30');
    expect(response.status).toBe(504);
    expect(response.body).toEqual({ statusCode: 504, message: 'Gateway Timeout' });
    expect(performance.now() - started).toBeGreaterThanOrEqual(2 * BUDGET_MS - 1);
    // The error comes from the server's 57014: the backend had stopped the sleep before the answer left.
    expect(await sleepers(db.name)).toBe(0);
  });

  it('takes the handler’s @RequestDeadline() in place of the datasource’s', async () => {
    const started = performance.now();
    await supertest(app.getHttpServer()).get('/decorated/30').expect(504);
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(BUDGET_MS - 1);
    expect(await sleepers(db.name)).toBe(0);
    // Longer than the datasource's default: the handler's replaces it.
    await supertest(app.getHttpServer()).get('/patient/1').expect(200, 'slept');
  });

  it('takes a deadline the application sets from what it knows (a header read by a guard)', async () => {
    await supertest(app.getHttpServer()).get('/header/30').set('x-request-timeout-ms', '200').expect(504);
    // Longer than the datasource's default: the request's own deadline replaces it.
    await supertest(app.getHttpServer()).get('/header/1').set('x-request-timeout-ms', '5000').expect(200);
  });

  it('lets a request that ends within its budget answer as usual', async () => {
    await supertest(app.getHttpServer()).get('/sleep/0.05').expect(200, 'slept');
  });

  it('rolls back a transaction its deadline cut, leaving nothing', async () => {
    await supertest(app.getHttpServer()).get('/transaction').expect(504);
    // The client goes back once the server has acted on the cancel and the rollback ran, which the answer need not wait for.
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'the client back');
    await expectNoOpenTransaction(pool, db.name);
    expect((await db.query("SELECT count(*)::int AS n FROM ledger WHERE note = 'cut by its deadline'")).rows[0].n).toBe(0);
  });

  it('refuses the later queries of the request at once, without borrowing a client', async () => {
    outcomes.started = new Deferred();
    let borrowed = 0;
    const count = (): void => void borrowed++;
    // Sent now (supertest sends on then()), answered once the handler went on.
    const answer = supertest(app.getHttpServer())
      .get('/after')
      .then((response) => response);
    await outcomes.started.promise;
    pool.on('acquire', count);
    try {
      expect((await answer).text).toBe('went on');
    } finally {
      pool.off('acquire', count);
    }
    expect(outcomes.running).toBeInstanceOf(DeadlineExceededError);
    expect((outcomes.running as DeadlineExceededError).cause).toMatchObject({ code: '57014' });
    expect(outcomes.later).toBeInstanceOf(DeadlineExceededError);
    expect((outcomes.later as DeadlineExceededError).cause).toBeUndefined();
    // The request's client was already out when the test started counting; the later query borrowed none.
    expect(borrowed).toBe(0);
  });

  it('refuses a query still waiting for a client when its deadline passes, and releases that client as it comes', async () => {
    const connection = app.get<PoolConnection>(getConnectionToken());
    const held = await Promise.all([holdClient(connection), holdClient(connection)]);
    try {
      await supertest(app.getHttpServer()).get('/decorated/0').expect(504);
    } finally {
      await Promise.all(held.map((h) => h.release()));
    }
  });
});

describe('work outside requests (ConnectionScope.run())', () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase('deadline_run');
    app = await createHttpApp({ imports: [PoolModule.forRoot({ ...db.options, max: 1, requestDeadlineMillis: 100 })] }, 'express');
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('is not bound by requestDeadlineMillis, which is for requests, but takes a deadline of its own', async () => {
    const connection = app.get<PoolConnection>(getConnectionToken());
    // A batch job longer than the requests' budget runs to its end.
    await expect(ConnectionScope.run(() => connection.query('SELECT pg_sleep(0.3)'))).resolves.toMatchObject({ rowCount: 1 });
    const cut = ConnectionScope.run(async () => {
      setRequestDeadline(100);
      return connection.query('SELECT pg_sleep(30)');
    });
    await expect(cut).rejects.toBeInstanceOf(DeadlineExceededError);
  });
});

describe('deadline input', () => {
  it('names a deadline that is not a positive number of milliseconds', () => {
    expect(() => RequestDeadline(0)).toThrow(InvalidDeadlineError);
    expect(() => RequestDeadline(Number.NaN)).toThrow(/positive, finite number of milliseconds, got NaN/);
    expect(() => setRequestDeadline(-5)).toThrow(InvalidDeadlineError);
  });

  it('says that setRequestDeadline() needs a request', () => {
    expect(() => setRequestDeadline(100)).toThrow(NoConnectionScopeError);
    expect(() => setRequestDeadline(100)).toThrow(/setRequestDeadline\(\) needs a connection scope/);
  });

});

@Controller('timeout')
class QueryTimeoutController {
  slowPid: number | undefined;

  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  /** Names its backend, then runs past node-postgres' client-side query_timeout. */
  @Get('slow')
  async slow(): Promise<string> {
    this.slowPid = (await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    await this.connection.query(`SELECT pg_sleep(2) ${SLEEP}`);
    return 'slept';
  }

  @Get('pid')
  async pid(): Promise<number> {
    return (await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  }
}

describe("node-postgres' query_timeout", () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase('query_timeout');
    app = await createHttpApp({ imports: [PoolModule.forRoot({ ...db.options, max: 1, query_timeout: 300 })], controllers: [QueryTimeoutController] }, 'express');
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('closes the connection whose query it gave up on, rather than lending it on mid-query', async () => {
    await supertest(app.getHttpServer()).get('/timeout/slow').expect(503);
    const slowPid = app.get(QueryTimeoutController).slowPid;
    // The pool's one client: a fresh connection, not the one whose query may still run on the server.
    const { text } = await supertest(app.getHttpServer()).get('/timeout/pid').expect(200);
    expect(Number(text)).not.toBe(slowPid);
    await waitFor(async () => ((await backendStates(db.name)).some((b) => b.pid === slowPid) ? undefined : true), 'the old backend gone');
  });
});

// Rounds of the sweep; SWEEP_ROUNDS=10000 for a longer one.
const SWEEP_ROUNDS = Number(process.env.SWEEP_ROUNDS ?? 1000);
const QUERY_MS = 25;

@Controller('sweep')
class SweepController {
  readonly counts = new Map<string, number>();
  started = new Deferred();

  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  /** A short query under a deadline of `ms` from now: cancelled, refused or done, by chance. */
  @Get('deadline/:ms')
  async deadline(@Param('ms') ms: string): Promise<string> {
    await this.connection.query('SELECT 1');
    setRequestDeadline(Number(ms));
    this.started.resolve();
    const outcome = await this.connection.query(`SELECT pg_sleep(${QUERY_MS / 1000})`).then(
      () => 'done',
      (error: unknown) =>
        error instanceof DeadlineExceededError ? (error.cause ? 'cancelled' : 'refused') : `failed: ${String(error)}`,
    );
    this.counts.set(outcome, (this.counts.get(outcome) ?? 0) + 1);
    return outcome;
  }

  @Get('innocent')
  async innocent(): Promise<string> {
    await this.connection.query('SELECT pg_sleep(0.002)');
    return 'ok';
  }
}

describe('deadlines swept around the end of short queries', () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase('deadline_sweep');
    app = await createHttpApp({ imports: [PoolModule.forRoot({ ...db.options, max: 1 })], controllers: [SweepController] }, 'express');
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it(`never fails the request queued behind one whose deadline passed (${SWEEP_ROUNDS} rounds)`, async () => {
    const sweep = app.get(SweepController);
    const pool = app.get<Pool>(getPoolToken());
    const innocentFailures: string[] = [];
    for (let round = 0; round < SWEEP_ROUNDS; round++) {
      sweep.started = new Deferred();
      // The deadline lands anywhere from the query's start to well after its end.
      const timed = supertest(app.getHttpServer()).get(`/sweep/deadline/${1 + Math.random() * QUERY_MS * 2}`).then((r) => r);
      await sweep.started.promise;
      // Queued behind it for the pool's one client: it gets that client the moment the timed request lets go.
      const innocent = await supertest(app.getHttpServer()).get('/sweep/innocent');
      if (innocent.status !== 200) innocentFailures.push(`${innocent.status} ${innocent.text}`);
      const outcome = await timed;
      if (outcome.status !== 200) innocentFailures.push(`timed request: ${outcome.status} ${outcome.text}`);
    }
    await waitFor(async () => (pool.totalCount === pool.idleCount && pool.waitingCount === 0 ? true : undefined), 'every client back');
    const counts = Object.fromEntries(sweep.counts);
    process.stdout.write(`[deadline sweep] ${SWEEP_ROUNDS} rounds: timed requests ${JSON.stringify(counts)}; innocent failures ${innocentFailures.length}\n`);
    expect(innocentFailures).toEqual([]);
    expect(Object.keys(counts).filter((outcome) => outcome.startsWith('failed'))).toEqual([]);
    expect((await backendStates(db.name)).filter((b) => b.state !== 'idle')).toEqual([]);
    // The sweep must have hit the running query: otherwise it proved nothing.
    expect(sweep.counts.get('cancelled') ?? 0).toBeGreaterThan(SWEEP_ROUNDS / 20);
  }, 300_000);
});
