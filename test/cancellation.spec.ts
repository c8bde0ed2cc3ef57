import { Controller, Get, Param, type INestApplication } from '@nestjs/common';
import type { Server } from 'node:http';
import pg, { type Pool } from 'pg';
import supertest, { type Response } from 'supertest';
import {
  getConnectionToken,
  getPoolToken,
  InjectConnection,
  PoolConnection,
  PoolModule,
  RequestAbandonedError,
  type PoolModuleOptions,
} from '../lib/index.js';
import { Deferred } from './support/deferred.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { addressOf, optionsVia } from './support/connection-url.js';
import { holdClient } from './support/hold-client.js';
import { expectNoOpenTransaction } from './support/transactions.js';
import { backendStates, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { createHttpApp, requestToHangUp } from './support/http-app.js';
import { startPgBouncer, type PgBouncer } from './support/pgbouncer.js';
import { whenAvailable } from './support/services.js';
import { Probe } from './support/probe.js';
import { TcpProxy } from './support/tcp-proxy.js';

// PostgreSQL cancels whatever a backend runs when the CancelRequest arrives,
// not a given query. These tests hold the cancel of a request whose client
// hung up in a proxy, and release it at the worst moment: once that query
// has ended and the next request wants the (only) connection. The next
// request must never be the one cancelled.

const ABANDONED = '/* abandoned */';
const INNOCENT = '/* innocent */';
// The abandoned query waits for this advisory lock, which the test holds: it runs until the test
// lets go, so that a loaded machine cannot miss it running (a short sleep can end unseen).
const LOCK = 22041;

@Controller()
class CancelController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly probe: Probe,
  ) {}

  /** Waits on the server for the test's lock (after a first query that names the backend), reporting its outcome to the probe. */
  @Get('locked')
  locked(): Promise<number> {
    return this.probe.follow(async () => {
      const pid = await this.pid('');
      this.probe.held.resolve(pid);
      await this.connection.query(`${ABANDONED} SELECT pg_advisory_xact_lock($1)`, [LOCK]);
      return pid;
    });
  }

  /** What a late cancel would kill: a query of another request, of `ms`. Answers its backend. */
  @Get('innocent/:ms')
  innocent(@Param('ms') ms: string): Promise<number> {
    return this.pid(`${INNOCENT} , pg_sleep(${Number(ms) / 1000})`);
  }

  private async pid(more: string): Promise<number> {
    const { rows } = await this.connection.query<{ pid: number }>(`SELECT pg_backend_pid() AS pid ${more}`);
    return rows[0].pid;
  }
}

/** True once a backend of `database` runs a statement containing `marker`. */
async function running(database: string, marker: string): Promise<boolean> {
  return (await backendStates(database)).some((b) => b.state === 'active' && b.query.includes(marker));
}

describe.each(['PostgreSQL', 'PgBouncer'] as const)('a cancel reaches only the query it was sent for (%s)', (target) => {
  const test = target === 'PgBouncer' ? whenAvailable('pgbouncer', 'cancels through PgBouncer') : it;
  let db: TestDatabase;
  let bouncer: PgBouncer | undefined;
  let proxy: TcpProxy;
  let app: INestApplication;
  let pool: Pool;
  const probe = new Probe();
  // PgBouncer hands out server connections per transaction: backends are not the client's to compare.
  const direct = target === 'PostgreSQL';

  beforeAll(async () => {
    db = await createTestDatabase('cancel');
    bouncer = direct ? undefined : await startPgBouncer(1);
    const upstream: PoolModuleOptions = bouncer ? bouncer.optionsFor(db.name) : db.options;
    proxy = await TcpProxy.start(addressOf(upstream));
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...optionsVia(upstream, proxy.address), max: 1 })],
        controllers: [CancelController],
        providers: [{ provide: Probe, useValue: probe }],
      },
      'express',
    );
    pool = app.get<Pool>(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await proxy?.close();
    await bouncer?.stop();
    await db?.drop();
  });

  /** LOCK, held on a connection of the test's own (straight to the server) until `release()`. */
  let lock: { release(): Promise<void> } | undefined;
  async function takeLock(): Promise<void> {
    const client = new pg.Client(db.options);
    await client.connect();
    await client.query('SELECT pg_advisory_lock($1)', [LOCK]);
    lock = {
      release: async () => {
        lock = undefined;
        await client.end(); // the session's lock goes with it
      },
    };
  }
  afterEach(() => lock?.release());

  /**
   * Starts a request that hangs up while its query waits for LOCK on the
   * server, and resolves once it has hung up (`request.hangUp()`).
   */
  async function abandonWhileLocked(): Promise<number> {
    probe.reset();
    await takeLock();
    const request = await requestToHangUp(app, '/locked');
    const pid = await probe.held.promise;
    await waitFor(async () => ((await running(db.name, ABANDONED)) ? true : undefined), 'the abandoned query to run');
    request.hangUp();
    return pid;
  }

  /**
   * Abandons a request whose query waits for LOCK, with its cancel held by
   * the proxy; resolves once the cancel is held. `finish()` ends the query.
   */
  async function abandonWithHeldCancel(): Promise<ReturnType<TcpProxy['holdCancelRequests']> & { pid: number; finish(): Promise<void> }> {
    const cancel = proxy.holdCancelRequests();
    const pid = await abandonWhileLocked();
    await cancel.held;
    return { ...cancel, pid, finish: () => lock!.release() };
  }

  /**
   * Sends the innocent request (a query long enough to be caught running)
   * and resolves once it waits for the pool's one client or runs on the
   * server, with its answer to come (in an object: a promise resolved with a
   * promise would wait for it).
   */
  async function innocentAtTheWorstMoment(): Promise<{ answer: Promise<Response> }> {
    let answered = false;
    const answer = supertest(app.getHttpServer())
      .get('/innocent/500')
      .then((response) => ((answered = true), response));
    // Answered counts too: on a loaded machine its waiting and its query can both pass between two looks.
    await waitFor(
      async () => (answered || pool.waitingCount > 0 || (await running(db.name, INNOCENT)) ? true : undefined),
      'the innocent request to wait for the client, run or be answered',
    );
    return { answer };
  }

  async function everyClientBack(): Promise<void> {
    await waitFor(async () => (pool.totalCount === pool.idleCount && pool.waitingCount === 0 ? true : undefined), 'every client back');
  }

  test('holds the client until the server has acted on the cancel, though the query ended before it arrived', async () => {
    const cancel = await abandonWithHeldCancel();
    // The abandoned query runs to its end: the cancel is still on its way.
    await cancel.finish();
    await waitFor(async () => ((await running(db.name, ABANDONED)) ? undefined : true), 'the abandoned query to end');
    expect(await probe.outcome.promise).toEqual(cancel.pid);
    const innocent = await innocentAtTheWorstMoment();
    cancel.release();
    const response = await innocent.answer;
    expect(response.status).toBe(200);
    // Kept, not closed: the server confirmed the cancel.
    if (direct) expect(Number(response.text)).toBe(cancel.pid);
    await everyClientBack();
  });

  test('closes the connection instead of reusing it when the cancel is not confirmed in time', async () => {
    const cancel = await abandonWithHeldCancel();
    await cancel.finish();
    const connectionsBefore = proxy.accepted;
    const innocent = await innocentAtTheWorstMoment();
    const response = await innocent.answer;
    expect(response.status).toBe(200);
    // One new connection, in place of the one whose cancel went unconfirmed.
    expect(proxy.accepted).toBe(connectionsBefore + 1);
    if (direct) {
      expect(response.body).not.toBe(cancel.pid);
      await waitFor(async () => ((await backendStates(db.name)).some((b) => b.pid === cancel.pid) ? undefined : true), 'the old backend to go');
    }
    // Late now, and harmless: its backend is gone (through PgBouncer, its server connection is idle).
    cancel.release();
    await supertest(app.getHttpServer()).get('/innocent/0').expect(200);
    await everyClientBack();
  });

  test('reuses the connection when the cancel never reached the server (its connection was dropped)', async () => {
    const cancel = await abandonWithHeldCancel();
    cancel.drop();
    await cancel.finish();
    // Not cancelled: the query runs to its end, then the client goes back.
    expect(await probe.outcome.promise).toEqual(cancel.pid);
    const response = await supertest(app.getHttpServer()).get('/innocent/0').expect(200);
    if (direct) expect(Number(response.text)).toBe(cancel.pid);
    await everyClientBack();
  });

  test('waits for the cancelled query to end too: the server confirmed the cancel before its ReadyForQuery came', async () => {
    const readyForQuery = proxy.holdReadyForQueryAfterError();
    await abandonWhileLocked();
    // The cancel went through: the server's error passed, its ReadyForQuery is held.
    await readyForQuery.held;
    const innocent = await innocentAtTheWorstMoment();
    expect(pool.waitingCount).toBe(1);
    readyForQuery.release();
    const outcome = await probe.outcome.promise;
    expect(outcome).toBeInstanceOf(RequestAbandonedError);
    expect((outcome as RequestAbandonedError).cause).toMatchObject({ code: '57014' });
    expect((await innocent.answer).status).toBe(200);
    await everyClientBack();
  });
});

/** What the abandoned requests of the sweep ended with, by kind; `started` settles as a round's query is sent. */
class Outcomes {
  readonly counts = new Map<string, number>();
  started = new Deferred();
  add(kind: string): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }
}

@Controller('sweep')
class SweepController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly outcomes: Outcomes,
  ) {}

  @Get('abandoned/:ms')
  async abandoned(@Param('ms') ms: string): Promise<string> {
    try {
      const query = this.connection.query('SELECT pg_sleep($1)', [Number(ms) / 1000]);
      this.outcomes.started.resolve();
      await query;
      this.outcomes.add('completed');
    } catch (error) {
      this.outcomes.add(error instanceof RequestAbandonedError ? (error.cause ? 'cancelled' : 'refused') : `failed: ${String(error)}`);
    }
    return 'done';
  }

  @Get('innocent')
  async innocent(): Promise<string> {
    await this.connection.query('SELECT pg_sleep(0.002)');
    return 'ok';
  }
}

// Rounds of the sweep; SWEEP_ROUNDS=10000 for a longer one.
const SWEEP_ROUNDS = Number(process.env.SWEEP_ROUNDS ?? 1000);
const QUERY_MS = 25;

describe('hang-ups swept around the end of short queries', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;
  const outcomes = new Outcomes();

  beforeAll(async () => {
    db = await createTestDatabase('sweep');
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...db.options, max: 1 })],
        controllers: [SweepController],
        providers: [{ provide: Outcomes, useValue: outcomes }],
      },
      'express',
    );
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it(`never fails the request queued behind one whose client hung up (${SWEEP_ROUNDS} rounds)`, async () => {
    pool = app.get<Pool>(getPoolToken());
    const innocentFailures: string[] = [];
    for (let round = 0; round < SWEEP_ROUNDS; round++) {
      outcomes.started = new Deferred();
      const abandoned = await requestToHangUp(app, `/sweep/abandoned/${QUERY_MS}`);
      // Queued behind it for the pool's one client: it gets that client the moment the abandoned request lets go.
      const innocent = supertest(app.getHttpServer()).get('/sweep/innocent').then((response) => response);
      // The hang-up lands anywhere from the query's start to well after its end, counted from the
      // start, so that a loaded machine (timers late, requests slow to arrive) shifts both alike.
      await outcomes.started.promise;
      setTimeout(abandoned.hangUp, Math.random() * QUERY_MS * 2);
      const response = await innocent;
      if (response.status !== 200) innocentFailures.push(`${response.status} ${response.text}`);
    }
    await waitFor(async () => (pool.totalCount === pool.idleCount && pool.waitingCount === 0 ? true : undefined), 'every client back');
    const states = await backendStates(db.name);
    const counts = Object.fromEntries(outcomes.counts);
    process.stdout.write(
      `[cancel sweep] ${SWEEP_ROUNDS} rounds: abandoned requests ${JSON.stringify(counts)}; innocent failures ${innocentFailures.length}\n`,
    );
    expect(innocentFailures).toEqual([]);
    expect(states.filter((b) => b.state !== 'idle')).toEqual([]);
    // The sweep must have hit the running query: otherwise it proved nothing.
    expect(outcomes.counts.get('cancelled') ?? 0).toBeGreaterThan(SWEEP_ROUNDS / 20);
  }, 300_000);
});

/** What a handler whose client hung up met: its running query, then the work it went on with. */
interface AfterHangUp {
  cancelled: unknown;
  later: unknown;
  transaction: unknown;
}

@Controller('after')
class AfterHangUpController {
  attempts = 0;

  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly probe: Probe,
  ) {}

  /** Sleeps until the client hangs up, then goes on with a query and a transaction, as a handler that caught the error would. */
  @Get('hang-up')
  async hangUp(): Promise<string> {
    const outcome: Partial<AfterHangUp> = {};
    this.probe.held.resolve(await this.pid());
    outcome.cancelled = await this.connection.query('SELECT pg_sleep(30)').catch((error: unknown) => error);
    outcome.later = await this.pid().catch((error: unknown) => error);
    outcome.transaction = await this.connection.transaction(() => this.pid()).catch((error: unknown) => error);
    this.probe.outcome.resolve(outcome);
    return 'finished';
  }

  /** A serializable transaction whose first attempt fails with 40001 and waits at the gate before it lets the failure out. */
  @Get('retry')
  retry(): Promise<number> {
    return this.probe.follow(() =>
      this.connection.transaction(
        async () => {
          this.attempts++;
          await this.connection.query("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$").catch(async (error: unknown) => {
            this.probe.held.resolve(this.attempts);
            await this.probe.gate.promise;
            throw error;
          });
          return this.attempts;
        },
        { retry: { maxRetries: 3, initialDelayMs: 1, maxDelayMs: 1 } },
      ),
    );
  }

  /** Waits for the pool's one client (held by the test), then queries. */
  @Get('waiting')
  waiting(): Promise<number> {
    return this.probe.follow(() => this.pid());
  }

  private async pid(): Promise<number> {
    return (await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  }
}

/** HTTP connections open to `app`'s server. */
function openConnections(app: INestApplication): Promise<number> {
  const server = app.getHttpServer() as Server;
  return new Promise((resolve, reject) => server.getConnections((error, count) => (error ? reject(error) : resolve(count))));
}

describe.each(['refuse', 'run'] as const)('a handler whose client hung up (queriesAfterHangUp: %s)', (policy) => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;
  let controller: AfterHangUpController;
  const probe = new Probe();
  const logger = new CapturingLogger();

  beforeAll(async () => {
    db = await createTestDatabase('after_hang_up');
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...db.options, max: 1, queriesAfterHangUp: policy })],
        controllers: [AfterHangUpController],
        providers: [{ provide: Probe, useValue: probe }],
      },
      'express',
    );
    app.useLogger(logger);
    pool = app.get<Pool>(getPoolToken());
    controller = app.get(AfterHangUpController);
  });

  afterEach(async () => {
    await waitFor(async () => (pool.totalCount === pool.idleCount && pool.waitingCount === 0 ? true : undefined), 'every client back');
    await expectNoOpenTransaction(pool, db.name);
    expect(logger.errors.splice(0)).toEqual([]);
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it(`has its running query cancelled, and its later work ${policy === 'refuse' ? 'refused' : 'run on clients of its own'}`, async () => {
    probe.reset();
    const request = await requestToHangUp(app, '/after/hang-up');
    const pid = await probe.held.promise;
    await waitFor(async () => ((await running(db.name, 'pg_sleep')) ? true : undefined), 'the query to run');
    request.hangUp();
    const outcome = (await probe.outcome.promise) as AfterHangUp;
    expect(outcome.cancelled).toBeInstanceOf(RequestAbandonedError);
    expect((outcome.cancelled as RequestAbandonedError).cause).toMatchObject({ code: '57014' });
    if (policy === 'refuse') {
      expect(outcome.later).toBeInstanceOf(RequestAbandonedError);
      expect(outcome.transaction).toBeInstanceOf(RequestAbandonedError);
    } else {
      // The pool's one client, back once the cancel was confirmed, borrowed again.
      expect(outcome.later).toBe(pid);
      expect(outcome.transaction).toBe(pid);
    }
  });

  it('makes no further attempt of a transaction the hang-up cut, whose retry races it', async () => {
    probe.reset();
    controller.attempts = 0;
    const request = await requestToHangUp(app, '/after/retry');
    expect(await probe.held.promise).toBe(1);
    request.hangUp();
    // The scope is aborted once its client went back (the failed transaction rolled back).
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'the client to be back');
    probe.gate.resolve();
    // Either way: a retry would run the transaction's work again for a client that left.
    expect(await probe.outcome.promise).toBeInstanceOf(RequestAbandonedError);
    expect(controller.attempts).toBe(1);
  });

  it('hands back at once the client that comes after its request was abandoned', async () => {
    const held = await holdClient(app.get<PoolConnection>(getConnectionToken()));
    probe.reset();
    const request = await requestToHangUp(app, '/after/waiting');
    await waitFor(async () => (pool.waitingCount === 1 ? true : undefined), 'the request to wait for the client');
    request.hangUp();
    await waitFor(async () => ((await openConnections(app)) === 0 ? true : undefined), 'the server to see the hang-up');
    await held.release();
    const outcome = await probe.outcome.promise;
    if (policy === 'refuse') expect(outcome).toBeInstanceOf(RequestAbandonedError);
    else expect(outcome).toBe(held.pid);
  });
});
