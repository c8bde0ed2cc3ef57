import { Controller, Get, Injectable, type INestApplication } from '@nestjs/common';
import type pg from 'pg';
import supertest from 'supertest';
import { ConnectionScope, getConnectionToken, InjectConnection, InjectPool, PoolConnection, PoolModule } from '../lib/index.js';
import { backendStates, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { ADAPTERS, createHttpApp, requestToHangUp } from './support/http-app.js';

// clientHold 'query': a request holds a client only while a query of it runs, unless something
// pins it (a transaction, the raw client, session state), on a pool of ONE so that another request
// can only run while the first holds nothing. Each test opens the gates it waits at itself.

const PID = 'SELECT pg_backend_pid() AS pid';
type Pid = { pid: number };

/** Where a handler stops until the test lets it go on: `reached` once it is there. */
class Gate {
  reached = new Deferred();
  private open = new Deferred();
  pass(): Promise<void> {
    this.reached.resolve();
    return this.open.promise;
  }
  release(): void {
    this.open.resolve();
  }
}

@Injectable()
class Gates {
  current = new Gate();
  reset(): Gate {
    return (this.current = new Gate());
  }
}

@Controller()
class HoldController {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly gates: Gates,
  ) {}

  private async pid(): Promise<number> {
    return (await this.connection.query<Pid>(PID)).rows[0].pid;
  }

  @Get('pid')
  async onePid(): Promise<number[]> {
    return [await this.pid()];
  }

  /** A query, other work (the gate), a query. */
  @Get('between')
  async between(): Promise<number[]> {
    const first = await this.pid();
    await this.gates.current.pass();
    return [first, await this.pid()];
  }

  /** The gate inside a transaction: the client is the transaction's till it ends. */
  @Get('in-transaction')
  async inTransaction(): Promise<number[]> {
    return this.connection.transaction(async () => {
      const first = await this.pid();
      await this.gates.current.pass();
      return [first, await this.pid()];
    });
  }

  /** A transaction, then the gate: its client went back as the transaction ended. */
  @Get('after-transaction')
  async afterTransaction(): Promise<number[]> {
    const first = await this.connection.transaction(() => this.pid());
    await this.gates.current.pass();
    return [first, await this.pid()];
  }

  /** The raw client, then the gate: it stays the request's to the end. */
  @Get('raw-client')
  async rawClient(): Promise<number[]> {
    const client = await this.connection.getClient();
    const first = (await client.query<Pid>(PID)).rows[0].pid;
    await this.gates.current.pass();
    return [first, await this.pid()];
  }

  /** A query made while a transaction runs on the request's client: it waits for the transaction's end, then runs. */
  @Get('query-during-transaction')
  async queryDuringTransaction(): Promise<number[]> {
    const inside = new Deferred();
    const finish = new Deferred();
    const transaction = this.connection.transaction(async () => {
      await this.pid();
      inside.resolve();
      await finish.promise;
      return this.pid();
    });
    await inside.promise;
    const plain = this.pid();
    finish.resolve();
    return Promise.all([transaction, plain]);
  }

  /** Ten queries at once. */
  @Get('concurrent')
  async concurrent(): Promise<number[]> {
    return Promise.all(Array.from({ length: 10 }, () => this.pid()));
  }

  @Get('sleep')
  async sleep(): Promise<void> {
    await this.connection.query('SELECT pg_sleep(30) /* client-hold */');
  }
}

describe.each(ADAPTERS)('clientHold: query (%s)', (adapter) => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: pg.Pool;
  let gates: Gates;
  let acquired = 0;

  @Injectable()
  class PoolProbe {
    constructor(@InjectPool() readonly pool: pg.Pool) {}
  }

  beforeAll(async () => {
    db = await createTestDatabase(`client_hold_${adapter}`);
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...db.options, max: 1, clientHold: 'query' })],
        controllers: [HoldController],
        providers: [Gates, PoolProbe],
      },
      adapter,
    );
    gates = app.get(Gates);
    pool = app.get(PoolProbe).pool;
    pool.on('acquire', () => acquired++);
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const get = (path: string): Promise<supertest.Response> => supertest(app.getHttpServer()).get(path).then((response) => response);

  /** Starts `path`, waits until its handler is at the gate, and resolves with its pending response. */
  async function atGate(path: string): Promise<{ gate: Gate; response: Promise<supertest.Response> }> {
    const gate = gates.reset();
    const response = get(path);
    await gate.reached.promise;
    return { gate, response };
  }

  /** Resolves once another request is waiting for the pool's one client. */
  const someoneWaits = (): Promise<true> => waitFor(async () => (pool.waitingCount > 0 ? true : undefined), 'a request waiting for the client');

  it('holds no client between the queries of a request: another request runs meanwhile', async () => {
    const { gate, response } = await atGate('/between');
    const other = await get('/pid');
    expect(other.status).toBe(200);
    gate.release();
    expect((await response).status).toBe(200);
  });

  it.each([
    ['a transaction', '/in-transaction'],
    ['the raw client of getClient()', '/raw-client'],
  ])('keeps the client pinned by %s: another request waits for the end, and both queries run on one backend', async (_pin, path) => {
    const { gate, response } = await atGate(path);
    const other = get('/pid');
    await someoneWaits();
    gate.release();
    const [mine, theirs] = await Promise.all([response, other]);
    expect(mine.status).toBe(200);
    const [first, second] = mine.body as number[];
    expect(second).toBe(first);
    expect(theirs.status).toBe(200);
  });

  it('releases the client as the transaction ends', async () => {
    const { gate, response } = await atGate('/after-transaction');
    expect((await get('/pid')).status).toBe(200);
    gate.release();
    expect((await response).status).toBe(200);
  });

  it('runs a query that waited for the request\'s transaction once it ends, on the same client', async () => {
    const response = await get('/query-during-transaction');
    expect(response.status).toBe(200);
    const [inTransaction, after] = response.body as number[];
    expect(after).toBe(inTransaction);
  });

  it('runs concurrent queries of one request on one client, borrowed once', async () => {
    const before = acquired;
    const response = await get('/concurrent');
    expect(response.status).toBe(200);
    expect(new Set(response.body as number[]).size).toBe(1);
    expect(acquired - before).toBe(1);
  });

  it('keeps one client throughout ConnectionScope.run(), whose caller asked for one', async () => {
    const connection = app.get<PoolConnection>(getConnectionToken());
    const before = acquired;
    const pids = await ConnectionScope.run(async () => {
      const first = (await connection.query<Pid>(PID)).rows[0].pid;
      await new Promise<void>((resolve) => setImmediate(resolve));
      return [first, (await connection.query<Pid>(PID)).rows[0].pid];
    });
    expect(pids[1]).toBe(pids[0]);
    expect(acquired - before).toBe(1);
  });

  it('cancels the running query of a request whose client hung up, and the client goes back', async () => {
    const request = await requestToHangUp(app, '/sleep');
    await waitFor(async () => ((await backendStates(db.name)).some((b) => b.state === 'active' && b.query.includes('client-hold')) ? true : undefined), 'the query to run');
    request.hangUp();
    await waitFor(async () => (pool.idleCount === pool.totalCount && pool.totalCount > 0 ? true : undefined), 'the client back in the pool');
    expect((await backendStates(db.name)).filter((b) => b.query.includes('client-hold') && b.state === 'active')).toEqual([]);
    expect((await get('/pid')).status).toBe(200);
  });
});

describe('clientHold: request (the default)', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: pg.Pool;
  let gates: Gates;

  @Injectable()
  class PoolProbe {
    constructor(@InjectPool() readonly pool: pg.Pool) {}
  }

  beforeAll(async () => {
    db = await createTestDatabase('client_hold_request');
    app = await createHttpApp(
      { imports: [PoolModule.forRoot({ ...db.options, max: 1 })], controllers: [HoldController], providers: [Gates, PoolProbe] },
      'express',
    );
    gates = app.get(Gates);
    pool = app.get(PoolProbe).pool;
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('holds the client from the first query to the answer: another request waits, and both queries run on one backend', async () => {
    const gate = gates.reset();
    const response = supertest(app.getHttpServer()).get('/between').then((r) => r);
    await gate.reached.promise;
    const other = supertest(app.getHttpServer()).get('/pid').then((r) => r);
    await waitFor(async () => (pool.waitingCount > 0 ? true : undefined), 'a request waiting for the client');
    gate.release();
    const [mine, theirs] = await Promise.all([response, other]);
    const [first, second] = mine.body as number[];
    expect(second).toBe(first);
    expect(theirs.status).toBe(200);
  });
});
