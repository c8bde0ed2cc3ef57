import { Controller, Get, Param, type INestApplication } from '@nestjs/common';
import type { Pool } from 'pg';
import supertest, { type Response } from 'supertest';
import { getPoolToken, InjectConnection, PoolConnection, PoolModule, RequestAbandonedError, type PoolModuleOptions } from '../lib/index.js';
import { backendStates, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { createHttpApp, requestToHangUp } from './support/http-app.js';
import { startPgBouncer, type PgBouncer } from './support/pgbouncer.js';
import { Probe } from './support/probe.js';
import { TcpProxy } from './support/tcp-proxy.js';

// PostgreSQL cancels whatever a backend runs when the CancelRequest arrives,
// not a given query. These tests hold the cancel of a request whose client
// hung up in a proxy, and release it at the worst moment: once that query
// has ended and the next request wants the (only) connection. The next
// request must never be the one cancelled.

const ABANDONED = '/* abandoned */';
const INNOCENT = '/* innocent */';

@Controller()
class CancelController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly probe: Probe,
  ) {}

  /** Sleeps `ms` on the server (after a first query that names the backend), reporting its outcome to the probe. */
  @Get('sleep/:ms')
  sleep(@Param('ms') ms: string): Promise<number> {
    return this.probe.follow(async () => {
      const pid = await this.pid('');
      this.probe.held.resolve(pid);
      await this.connection.query(`${ABANDONED} SELECT pg_sleep($1)`, [Number(ms) / 1000]);
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
    proxy = await TcpProxy.start({ host: String(upstream.host), port: Number(upstream.port) });
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...upstream, host: '127.0.0.1', port: proxy.port, max: 1 })],
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

  /**
   * Starts a request that hangs up while its query sleeps `ms` on the server,
   * with its cancel held by the proxy; resolves once the cancel is held.
   */
  async function abandonWithHeldCancel(ms: number): Promise<ReturnType<TcpProxy['holdCancelRequests']> & { pid: number }> {
    probe.reset();
    const cancel = proxy.holdCancelRequests();
    const request = await requestToHangUp(app, `/sleep/${ms}`);
    const pid = await probe.held.promise;
    await waitFor(async () => ((await running(db.name, ABANDONED)) ? true : undefined), 'the abandoned query to run');
    request.hangUp();
    await cancel.held;
    return { ...cancel, pid };
  }

  /**
   * Sends the innocent request (a query long enough to be caught running)
   * and resolves once it waits for the pool's one client or runs on the
   * server, with its answer to come (in an object: a promise resolved with a
   * promise would wait for it).
   */
  async function innocentAtTheWorstMoment(): Promise<{ answer: Promise<Response> }> {
    const answer = supertest(app.getHttpServer())
      .get('/innocent/500')
      .then((response) => response);
    await waitFor(
      async () => (pool.waitingCount > 0 || (await running(db.name, INNOCENT)) ? true : undefined),
      'the innocent request to wait for the client or run',
    );
    return { answer };
  }

  async function everyClientBack(): Promise<void> {
    await waitFor(async () => (pool.totalCount === pool.idleCount && pool.waitingCount === 0 ? true : undefined), 'every client back');
  }

  it('holds the client until the server has acted on the cancel, though the query ended before it arrived', async () => {
    const cancel = await abandonWithHeldCancel(200);
    // The abandoned query ran to its end: the cancel is still on its way.
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

  it('closes the connection instead of reusing it when the cancel is not confirmed in time', async () => {
    const cancel = await abandonWithHeldCancel(200);
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

  it('reuses the connection when the cancel never reached the server (its connection was dropped)', async () => {
    const cancel = await abandonWithHeldCancel(300);
    cancel.drop();
    // Not cancelled: the query runs to its end, then the client goes back.
    expect(await probe.outcome.promise).toEqual(cancel.pid);
    const response = await supertest(app.getHttpServer()).get('/innocent/0').expect(200);
    if (direct) expect(Number(response.text)).toBe(cancel.pid);
    await everyClientBack();
  });

  it('waits for the cancelled query to end too: the server confirmed the cancel before its ReadyForQuery came', async () => {
    probe.reset();
    const readyForQuery = proxy.holdReadyForQueryAfterError();
    const request = await requestToHangUp(app, '/sleep/30000');
    await probe.held.promise;
    await waitFor(async () => ((await running(db.name, ABANDONED)) ? true : undefined), 'the abandoned query to run');
    request.hangUp();
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

/** What the abandoned requests of the sweep ended with, by kind. */
class Outcomes {
  readonly counts = new Map<string, number>();
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
      await this.connection.query('SELECT pg_sleep($1)', [Number(ms) / 1000]);
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
const QUERY_MS = 8;

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
      const abandoned = await requestToHangUp(app, `/sweep/abandoned/${QUERY_MS}`);
      // Queued behind it for the pool's one client: it gets that client the moment the abandoned request lets go.
      const innocent = supertest(app.getHttpServer()).get('/sweep/innocent').then((response) => response);
      // The hang-up lands anywhere from before the query starts to after it ended.
      setTimeout(abandoned.hangUp, Math.random() * QUERY_MS * 2.5);
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
