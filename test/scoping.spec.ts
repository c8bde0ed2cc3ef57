import { Controller, Get, Injectable, InternalServerErrorException, Req, Res, type INestApplication } from '@nestjs/common';
import { Agent, type ServerResponse } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg, { type Pool } from 'pg';
import supertest from 'supertest';
import { getPoolToken, InjectConnection, PoolConnection, PoolModule, RequestAbandonedError } from '../lib/index.js';
import { backendStates, createTestDatabase, waitFor, waitForRunningQuery, type TestDatabase } from './support/database.js';
import { ADAPTERS, createHttpApp, getAndStopReading, getChunks, getKeptAlive, requestToHangUp } from './support/http-app.js';
import { Probe } from './support/probe.js';

@Injectable()
class FirstService {
  constructor(@InjectConnection() readonly connection: PoolConnection) {}
  async pid(): Promise<number> {
    const { rows } = await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    return rows[0].pid;
  }
}

@Injectable()
class SecondService {
  constructor(@InjectConnection() readonly connection: PoolConnection) {}
  async pid(): Promise<number> {
    const { rows } = await this.connection.query<{ pid: number }>({ text: 'SELECT pg_backend_pid() AS pid' });
    return rows[0].pid;
  }
}

@Controller()
class ScopeController {
  constructor(
    private readonly first: FirstService,
    private readonly second: SecondService,
    private readonly probe: Probe,
  ) {}

  @Get('pids')
  async pids(): Promise<number[]> {
    const [a, b] = await Promise.all([this.first.pid(), this.second.pid()]);
    return [a, b, await this.first.pid(), await this.second.pid()];
  }

  /** Four queries at once, from both services, and three at once inside a transaction: each set one after another on the request's client. */
  @Get('concurrent')
  async concurrent(): Promise<{ pids: number[]; inTransaction: number[] }> {
    const pids = await Promise.all([this.first.pid(), this.second.pid(), this.first.pid(), this.second.pid()]);
    const inTransaction = await this.first.connection.transaction(async () => {
      await this.first.connection.query('CREATE TEMP TABLE numbers (n int)');
      await Promise.all([1, 2, 3].map((n) => this.first.connection.query('INSERT INTO numbers VALUES ($1)', [n])));
      const { rows } = await this.first.connection.query<{ n: number }>('SELECT n FROM numbers ORDER BY n');
      return rows.map((row) => row.n);
    });
    return { pids, inTransaction };
  }

  @Get('fail')
  async fail(): Promise<never> {
    await this.first.pid();
    throw new InternalServerErrorException('handler failed after a query');
  }

  @Get('idle')
  idle(): string {
    return 'no query';
  }

  @Get('sleep')
  sleep(): Promise<string> {
    return this.probe.follow(async () => {
      this.probe.held.resolve(await this.first.pid());
      await this.first.connection.query('SELECT pg_sleep(30)');
      return 'slept';
    });
  }

  /** Remembers, weakly, the Node request of this call. */
  @Get('remembered')
  async remembered(@Req() request: { raw?: object }): Promise<number> {
    lastRequest = new WeakRef(request.raw ?? request);
    return this.first.pid();
  }

  /** A body larger than the socket buffers: a client that stops reading leaves its response unfinished. */
  @Get('large')
  async large(@Res({ passthrough: true }) response: ServerResponse & { raw?: ServerResponse }): Promise<string> {
    lastResponse = response.raw ?? response;
    await this.first.pid();
    return 'x'.repeat(LARGE_BODY_BYTES);
  }

  /** Streamed: one backend per line, the second line once the probe's gate opens. */
  @Get('stream')
  async *stream(): AsyncGenerator<string> {
    yield `${await this.first.pid()}\n`;
    await this.probe.gate.promise;
    yield `${await this.second.pid()}\n`;
  }

  /** Queries again once the response is finished, as an audit 'finish' listener would. */
  @Get('after-finish')
  async afterFinish(@Res({ passthrough: true }) response: ServerResponse & { raw?: ServerResponse }): Promise<number> {
    (response.raw ?? response).once('finish', () => void this.probe.follow(() => this.second.pid()).catch(() => undefined));
    return this.first.pid();
  }

  @Get('instances')
  instances(): boolean {
    return this.first.connection === this.second.connection;
  }
}

let lastRequest: WeakRef<object> | undefined;
let lastResponse: ServerResponse | undefined;
const LARGE_BODY_BYTES = 16 * 1024 * 1024;

/** V8's collector, made callable without starting node with --expose-gc. */
function collectGarbage(): void {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

describe.each(ADAPTERS)('connection scoping (%s)', (adapter) => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;
  const probe = new Probe();

  beforeAll(async () => {
    db = await createTestDatabase('scoping');
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...db.options, max: 5 })],
        controllers: [ScopeController],
        providers: [FirstService, SecondService, { provide: Probe, useValue: probe }],
      },
      adapter,
    );
    pool = app.get<Pool>(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const checkedOut = (): number => pool.totalCount - pool.idleCount;

  it('runs every query of one request, from two services, on one backend', async () => {
    const { body } = await supertest(app.getHttpServer()).get('/pids').expect(200);
    expect(body).toHaveLength(4);
    expect(new Set(body).size).toBe(1);
    expect(checkedOut()).toBe(0);
  });

  it("runs a request's concurrent queries one after another on its client, never on a busy one", async () => {
    // What pg 8 warns about (once per process) and pg 9 will refuse: query() on a client still running one.
    const query = pg.Client.prototype.query;
    let onBusyClient = 0;
    pg.Client.prototype.query = function (this: pg.Client & { readyForQuery?: boolean }, ...args: unknown[]) {
      if (this.readyForQuery === false) onBusyClient++;
      return (query as (...args: unknown[]) => unknown).apply(this, args);
    } as typeof query;
    // The temporary table is dropped (DISCARD TEMP) before the client goes back: one round trip after the answer.
    const back = new Promise((resolve) => pool.once('release', resolve));
    try {
      const { body } = await supertest(app.getHttpServer()).get('/concurrent').expect(200);
      expect(new Set(body.pids).size).toBe(1);
      expect(body.inTransaction).toEqual([1, 2, 3]);
      await back;
    } finally {
      pg.Client.prototype.query = query;
    }
    expect(onBusyClient).toBe(0);
    expect(checkedOut()).toBe(0);
  });

  it('gives concurrent requests different backends and takes every client back', async () => {
    const server = app.getHttpServer();
    const responses = await Promise.all([1, 2, 3].map(() => supertest(server).get('/pids').expect(200)));
    const pids = responses.map((response) => (response.body as number[])[0]);
    for (const response of responses) expect(new Set(response.body).size).toBe(1);
    expect(new Set(pids).size).toBe(3);
    expect(checkedOut()).toBe(0);
  });

  it('releases the client when the handler throws', async () => {
    await supertest(app.getHttpServer()).get('/fail').expect(500);
    expect(checkedOut()).toBe(0);
    await supertest(app.getHttpServer()).get('/pids').expect(200);
  });

  it('leaves the pool untouched for a route that never queries', async () => {
    const before = { total: pool.totalCount, idle: pool.idleCount };
    await supertest(app.getHttpServer()).get('/idle').expect(200);
    expect({ total: pool.totalCount, idle: pool.idleCount }).toEqual(before);
  });

  it('keeps services that inject the connection singletons', async () => {
    await supertest(app.getHttpServer()).get('/instances').expect(200, 'true');
    expect(app.get(FirstService)).toBe(app.get(FirstService));
    expect(app.get(FirstService).connection).toBeInstanceOf(PoolConnection);
  });

  it('lets go of a request once its response is over, while its keep-alive connection stays open', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      expect(Number(await getKeptAlive(app, agent, '/remembered'))).toBeGreaterThan(0);
      expect(agent.freeSockets).not.toEqual({});
      // The socket's keep-alive timer, made during the request, keeps the request's scope as its async context.
      await new Promise((resolve) => setImmediate(resolve));
      collectGarbage();
      expect(lastRequest?.deref()).toBeUndefined();
      expect(checkedOut()).toBe(0);
    } finally {
      agent.destroy();
    }
  });

  it('takes the client back as the answer goes out, not once a slow client has read it all', async () => {
    const { response, destroy } = await getAndStopReading(app, '/large');
    try {
      expect(response.statusCode).toBe(200);
      // The body is still on its way: the response has not finished, its scope has not ended...
      expect(lastResponse?.writableFinished).toBe(false);
      // ...and the client it used is back in the pool.
      expect(checkedOut()).toBe(0);
    } finally {
      destroy();
    }
  });

  it('holds no client while a streamed answer waits between its queries, and serves every line', async () => {
    probe.reset();
    const { next } = await getChunks(app, '/stream');
    const first = await next();
    const heldWhileStreaming = checkedOut();
    probe.gate.resolve();
    expect(heldWhileStreaming).toBe(0);
    let rest = '';
    for (let chunk = await next(); chunk !== undefined; chunk = await next()) rest += chunk;
    expect(first).toMatch(/^\d+\n$/);
    expect(rest).toMatch(/^\d+\n$/);
    expect(checkedOut()).toBe(0);
  });

  it('borrows a client again for a query made after the response, and takes it back', async () => {
    probe.reset();
    await supertest(app.getHttpServer()).get('/after-finish').expect(200);
    expect(await probe.outcome.promise).toEqual(expect.any(Number));
    expect(checkedOut()).toBe(0);
  });

  it('cancels the query and takes the client back when the HTTP client hangs up', async () => {
    probe.reset();
    const request = await requestToHangUp(app, '/sleep');
    const pid = await probe.held.promise;
    await waitForRunningQuery(db.name, pid, 'pg_sleep');
    request.hangUp();
    const outcome = await probe.outcome.promise;
    expect(outcome).toBeInstanceOf(RequestAbandonedError);
    expect((outcome as RequestAbandonedError).cause).toMatchObject({ code: '57014' }); // query_canceled
    // Back once the server has also closed the cancel request's connection (see cancellation.spec.ts).
    await waitFor(async () => (checkedOut() === 0 ? true : undefined), 'the client to be back');
    const backend = (await backendStates(db.name)).find((b) => b.pid === pid);
    expect(backend?.state).toBe('idle');
    const { body } = await supertest(app.getHttpServer()).get('/pids').expect(200);
    expect(new Set(body).size).toBe(1);
  });
});
