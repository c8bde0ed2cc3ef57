import { Controller, Get, Injectable, Param, type INestApplication, type INestApplicationContext } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import type { EventEmitter } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import type { Pool } from 'pg';
import supertest from 'supertest';
import {
  ConnectionFailedError,
  ConnectionScope,
  DatabaseUnreachableError,
  getConnectionToken,
  getPoolToken,
  InjectConnection,
  PoolConnection,
  PoolClosedError,
  PoolModule,
  type PoolModuleOptions,
} from '../lib/index.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { addressOf, optionsVia } from './support/connection-url.js';
import { adminQuery, applicationBackends, createTestDatabase, waitFor, waitForRunningQuery, type TestDatabase } from './support/database.js';
import { holdClient } from './support/hold-client.js';
import { ADAPTERS, type AdapterName } from './support/http-app.js';
import { Probe } from './support/probe.js';
import { TcpProxy } from './support/tcp-proxy.js';

const PID = 'SELECT pg_backend_pid() AS pid';

@Injectable()
class Repository {
  constructor(@InjectConnection() readonly connection: PoolConnection) {}

  async pid(): Promise<number> {
    return (await this.connection.query<{ pid: number }>(PID)).rows[0].pid;
  }
}

@Controller()
class ReliabilityController {
  constructor(
    private readonly repository: Repository,
    private readonly probe: Probe,
  ) {}

  private get connection(): PoolConnection {
    return this.repository.connection;
  }

  @Get('pid')
  pid(): Promise<number> {
    return this.repository.pid();
  }

  /** One query, then waits for the test to open the gate, then a second query. */
  @Get('hold')
  hold(): Promise<number[]> {
    return this.probe.follow(async () => {
      const first = await this.repository.pid();
      this.probe.held.resolve(first);
      await this.probe.gate.promise;
      return [first, await this.repository.pid()];
    });
  }

  @Get('sleep/:seconds')
  sleep(@Param('seconds') seconds: string): Promise<number> {
    return this.probe.follow(async () => {
      this.probe.held.resolve(await this.repository.pid());
      await this.connection.query('SELECT pg_sleep($1)', [Number(seconds)]);
      return this.repository.pid();
    });
  }

  @Get('begin-and-throw')
  beginAndThrow(): Promise<never> {
    return this.probe.follow(async () => {
      await this.connection.query('BEGIN');
      await this.connection.query('INSERT INTO items (label) VALUES ($1)', ['never committed']);
      throw new Error('handler failed inside its transaction');
    });
  }

  /** Opens a transaction without the word BEGIN and returns without committing. */
  @Get('forget-commit')
  async forgetCommit(): Promise<string> {
    await this.connection.query('START TRANSACTION ISOLATION LEVEL REPEATABLE READ');
    await this.connection.query('INSERT INTO items (label) VALUES ($1)', ['forgotten']);
    return 'returned without COMMIT';
  }

  /** Leaves a failed transaction ('E') behind. */
  @Get('failed-transaction')
  async failedTransaction(): Promise<string> {
    await this.connection.query('BEGIN');
    await this.connection.query('INSERT INTO items (label) VALUES ($1)', ['in a failed transaction']);
    await this.connection.query('SELECT 1 / 0').catch(() => undefined);
    return 'returned inside a failed transaction';
  }

  @Get('commit')
  async commit(): Promise<string> {
    await this.connection.query('BEGIN');
    await this.connection.query('INSERT INTO items (label) VALUES ($1)', ['committed']);
    await this.connection.query('COMMIT');
    return 'committed';
  }

  /** What the next borrower of a client sees: an open transaction, rows. */
  @Get('transaction-state')
  async transactionState(): Promise<{ pid: number; xid: string | null; labels: string[] }> {
    const { rows } = await this.connection.query<{ pid: number; xid: string | null }>(
      'SELECT pg_backend_pid() AS pid, pg_current_xact_id_if_assigned()::text AS xid',
    );
    const items = await this.connection.query<{ label: string }>('SELECT label FROM items ORDER BY id');
    return { ...rows[0], labels: items.rows.map((row) => row.label) };
  }

  @Get('dirty-session')
  async dirtySession(): Promise<number> {
    await this.connection.query("SET statement_timeout = '4321'");
    await this.connection.query('CREATE TEMP TABLE scratch (n int)');
    await this.connection.query('SELECT pg_advisory_lock(4242)');
    return this.namedStatement();
  }

  @Get('session')
  async session(): Promise<Record<string, unknown>> {
    const { rows } = await this.connection.query(
      `SELECT pg_backend_pid() AS pid,
              current_setting('statement_timeout') AS statement_timeout,
              to_regclass('pg_temp.scratch') IS NOT NULL AS temp_table,
              (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks`,
    );
    return rows[0];
  }

  /** A named (prepared) statement: node-postgres parses it once per connection. */
  @Get('named-statement')
  async namedStatement(): Promise<number> {
    const { rows } = await this.connection.query<{ pid: number }>({ name: 'reliability-pid', text: PID });
    return rows[0].pid;
  }

  @Get('syntax-error')
  async syntaxError(): Promise<void> {
    await this.probe.follow(() => this.connection.query('SELEC 1'));
  }

  @Get('insert/:label')
  async insert(@Param('label') label: string): Promise<string> {
    // The value goes as a parameter, never into the SQL text.
    await this.probe.follow(() => this.connection.query('INSERT INTO items (label) VALUES ($1)', [label]));
    return label;
  }
}

interface Started {
  app: INestApplication;
  pool: Pool;
  logger: CapturingLogger;
  probe: Probe;
  http: () => supertest.Agent;
}

/** The application under test, listening on a free port, its logs captured. */
async function startApp(options: PoolModuleOptions, adapter: AdapterName = 'express'): Promise<Started> {
  const logger = new CapturingLogger();
  const probe = new Probe();
  const moduleRef = await Test.createTestingModule({
    imports: [PoolModule.forRoot(options)],
    controllers: [ReliabilityController],
    providers: [Repository, { provide: Probe, useValue: probe }],
  }).compile();
  const app = moduleRef.createNestApplication(adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(), { logger });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;
  return { app, pool: app.get<Pool>(getPoolToken()), logger, probe, http: () => supertest(url) };
}

/** GETs `path`, expecting 200 and a backend pid as the body. */
async function pidFrom(s: Started, path = '/pid'): Promise<number> {
  const { text } = await s.http().get(path).expect(200);
  return Number(text);
}

const checkedOut = (pool: Pool): number => pool.totalCount - pool.idleCount;

async function terminate(pid: number): Promise<void> {
  const { rows } = await adminQuery<{ done: boolean }>('SELECT pg_terminate_backend($1) AS done', [pid]);
  expect(rows[0].done).toBe(true);
}

async function backendExists(pid: number): Promise<boolean> {
  const { rows } = await adminQuery('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
  return rows.length > 0;
}

let db: TestDatabase;
let appCount = 0;

/** Options of a fresh application on the suite's database, with a name of its own on the server. */
function optionsFor(extra: PoolModuleOptions = {}): PoolModuleOptions & { application_name: string } {
  return { ...db.options, application_name: `npp-reliability-${++appCount}`, ...extra };
}

/** The application under test connecting through a TCP proxy in front of the suite's database, for network faults. */
async function startBehindProxy(extra: PoolModuleOptions): Promise<{ proxy: TcpProxy; s: Started }> {
  const proxy = await TcpProxy.start(addressOf(db.options));
  try {
    return { proxy, s: await startApp({ ...optionsVia(optionsFor(), proxy.address), ...extra }) };
  } catch (error) {
    await proxy.close();
    throw error;
  }
}

async function stopBehindProxy(s: Started | undefined, proxy: TcpProxy | undefined): Promise<void> {
  await s?.app.close();
  await proxy?.close();
}

beforeAll(async () => {
  db = await createTestDatabase('reliability');
  await db.query('CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL UNIQUE)');
});

afterAll(async () => {
  await db?.drop();
});

describe('connections that die', () => {
  let s: Started;
  beforeAll(async () => (s = await startApp(optionsFor({ max: 1 }))));
  afterAll(() => s?.app.close());
  beforeEach(() => s.probe.reset());
  afterEach(() => s.probe.gate.resolve()); // a failed test must not leave a handler waiting

  it('removes an idle client whose backend was terminated, without crashing, and opens a new one', async () => {
    const pid = await pidFrom(s);
    expect(s.pool.idleCount).toBe(1);
    const since = s.logger.messages.length;
    await terminate(pid);
    await s.logger.next(/an idle connection failed .* and was removed/, since);
    expect(s.pool.totalCount).toBe(0);
    const next = await pidFrom(s);
    expect(next).not.toBe(pid);
    expect(s.pool.totalCount).toBe(1);
  });

  it('keeps the process alive when the backend of a client checked out of the pool directly dies', async () => {
    // No 'error' listener of the caller's own: node-postgres would crash the process without the module's.
    const client = await s.pool.connect();
    let pid = 0;
    try {
      // Checked first: without it, the terminate below would crash the test run.
      expect(client.listenerCount('error')).toBe(1);
      pid = (await client.query<{ pid: number }>(PID)).rows[0].pid;
      const socket = (client as unknown as { connection: { stream: Socket } }).connection.stream;
      const closed = new Promise((resolve) => socket.once('close', resolve));
      await terminate(pid);
      // The server's FATAL comes, and with it the client's 'error', before the socket closes.
      await closed;
      await expect(client.query('SELECT 1')).rejects.toThrow(/not queryable|terminated/);
    } finally {
      client.release(true);
    }
    expect(await pidFrom(s)).not.toBe(pid);
    expect(checkedOut(s.pool)).toBe(0);
  });

  it('fails the request whose backend dies inside a query, closes that client and serves the next request', async () => {
    const response = s.http().get('/sleep/30').then((r) => r);
    const pid = await s.probe.held.promise;
    await waitForRunningQuery(db.name, pid, 'pg_sleep');
    await terminate(pid);
    expect((await response).status).toBe(503);
    const outcome = await s.probe.outcome.promise;
    expect(outcome).toBeInstanceOf(ConnectionFailedError);
    expect((outcome as Error).message).toMatch(/Connection of datasource "default" failed and was closed: terminating connection due to administrator command/);
    const next = await pidFrom(s);
    expect(next).not.toBe(pid);
    expect(checkedOut(s.pool)).toBe(0);
    expect(s.pool.totalCount).toBe(1);
  });

  it('fails the request whose backend dies while the handler awaits something else, and serves the next one', async () => {
    const response = s.http().get('/hold').then((r) => r);
    const pid = await s.probe.held.promise;
    const since = s.logger.messages.length;
    await terminate(pid);
    // node-postgres emits 'error' on the checked-out client: the module's listener logs it.
    await s.logger.next(/a checked-out connection failed .*; it will be closed, not reused/, since);
    s.probe.gate.resolve();
    expect((await response).status).toBe(503);
    const outcome = await s.probe.outcome.promise;
    expect(outcome).toBeInstanceOf(ConnectionFailedError);
    expect((outcome as Error).message).toMatch(/terminating connection due to administrator command/);
    // One failure, one warning (node-postgres emits 'error' for the message, then for the closed socket).
    expect(s.logger.messages.slice(since).filter((m) => /a checked-out connection failed/.test(m))).toHaveLength(1);
    const next = await pidFrom(s);
    expect(next).not.toBe(pid);
    expect(checkedOut(s.pool)).toBe(0);
  });

  it('keeps the client after bad SQL: a syntax error, a unique violation', async () => {
    const pid = await pidFrom(s);
    await s.http().get('/syntax-error').expect(500);
    expect(await s.probe.outcome.promise).toMatchObject({ code: '42601' });
    s.probe.reset();
    await s.http().get('/insert/twice').expect(200);
    s.probe.reset();
    await s.http().get('/insert/twice').expect(500);
    expect(await s.probe.outcome.promise).toMatchObject({ code: '23505' });
    await s.http().get('/pid').expect(200, String(pid));
    expect(checkedOut(s.pool)).toBe(0);
    await adminQuery('SELECT 1'); // the server is fine too
  });

  it('sends values as parameters, never as SQL', async () => {
    const label = encodeURIComponent("x'); DROP TABLE items; --");
    await s.http().get(`/insert/${label}`).expect(200);
    const { body } = await s.http().get('/transaction-state').expect(200);
    expect(body.labels).toContain("x'); DROP TABLE items; --");
  });
});

describe('transactions left open by a handler', () => {
  let s: Started;
  let applicationName: string;
  beforeAll(async () => {
    const options = optionsFor({ max: 1 });
    applicationName = options.application_name;
    s = await startApp(options);
  });
  afterAll(() => s?.app.close());
  beforeEach(async () => {
    s.probe.reset();
    await db.query('TRUNCATE items');
  });

  /** The next borrower of the (single) client: same backend, no open transaction, no uncommitted row. */
  async function expectCleanClient(pid: number): Promise<void> {
    const { body } = await s.http().get('/transaction-state').expect(200);
    expect(body).toEqual({ pid, xid: null, labels: [] });
    expect((await applicationBackends(applicationName, db.options)).filter((b) => b.state === 'idle in transaction')).toEqual([]);
  }

  it('rolls back the transaction of a handler that ran BEGIN and threw', async () => {
    const pid = await pidFrom(s);
    await s.http().get('/begin-and-throw').expect(500);
    expect(await s.probe.outcome.promise).toMatchObject({ message: 'handler failed inside its transaction' });
    await expectCleanClient(pid);
  });

  it('rolls back the transaction of a handler that forgot to commit, however it was opened', async () => {
    const pid = await pidFrom(s);
    await s.http().get('/forget-commit').expect(200);
    await expectCleanClient(pid);
  });

  it('rolls back a failed transaction', async () => {
    const pid = await pidFrom(s);
    await s.http().get('/failed-transaction').expect(200);
    await expectCleanClient(pid);
  });

  it('leaves committed work alone', async () => {
    await s.http().get('/commit').expect(200);
    const { body } = await s.http().get('/transaction-state').expect(200);
    expect(body).toMatchObject({ xid: null, labels: ['committed'] });
  });
});

describe('session state on release', () => {
  it('is undone by default: a SET, a temp table, an advisory lock do not reach the next request on the connection', async () => {
    const s = await startApp(optionsFor({ max: 1 }));
    try {
      const pid = await pidFrom(s, '/dirty-session');
      const { body } = await s.http().get('/session').expect(200);
      expect(body).toEqual({ pid, statement_timeout: '0', temp_table: false, advisory_locks: 0 });
    } finally {
      await s.app.close();
    }
  });

  it("is cleared by resetOnRelease: 'DISCARD ALL', and named statements still work after it", async () => {
    const s = await startApp(optionsFor({ max: 1, resetOnRelease: 'DISCARD ALL' }));
    try {
      const pid = await pidFrom(s, '/dirty-session');
      const { body } = await s.http().get('/session').expect(200);
      expect(body).toEqual({ pid, statement_timeout: '0', temp_table: false, advisory_locks: 0 });
      // DISCARD ALL also deallocated the statement node-postgres prepared.
      await s.http().get('/named-statement').expect(200, String(pid));
      await s.http().get('/named-statement').expect(200, String(pid));
    } finally {
      await s.app.close();
    }
  });
});

describe.each(ADAPTERS)('no connection to be had (%s)', (adapter) => {
  let s: Started;
  beforeAll(async () => (s = await startApp(optionsFor({ max: 1, connectionTimeoutMillis: 1000, maxWaitingClients: 1 }), adapter)));
  afterAll(() => s?.app.close());
  beforeEach(() => s.probe.reset());
  afterEach(() => s.probe.gate.resolve()); // a failed test must not leave a handler waiting

  it('answers 503 with Retry-After when every client stayed busy for the acquire timeout', async () => {
    const holder = s.http().get('/hold').then((r) => r);
    await s.probe.held.promise;
    const response = await s.http().get('/pid');
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('1');
    // The answer says nothing of the pool; the log says which refusal it was, once.
    expect(response.body).toEqual({ statusCode: 503, message: 'Service Unavailable' });
    expect(s.logger.matching(/: Datasource "default" is exhausted: all 1 connections stayed busy for \d+ ms \(1 open, 0 idle, 0 waiting\)$/)).toHaveLength(1);
    s.probe.gate.resolve();
    expect((await holder).status).toBe(200);
    await s.http().get('/pid').expect(200);
    expect(checkedOut(s.pool)).toBe(0);
  });

  it('answers 503 at once when maxWaitingClients requests already wait', async () => {
    const holder = s.http().get('/hold').then((r) => r);
    await s.probe.held.promise;
    const waiting = s.http().get('/pid').then((r) => r);
    await waitFor(async () => (s.pool.waitingCount === 1 ? true : undefined), 'a request to wait for the client');
    const refused = await s.http().get('/pid');
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.body).toEqual({ statusCode: 503, message: 'Service Unavailable' });
    expect(s.logger.matching(/: Datasource "default" refused a connection request: 1 requests already wait for one of its 1 connections$/)).toHaveLength(1);
    // Refused while the other still waits: the refusal did not wait.
    expect(s.pool.waitingCount).toBe(1);
    s.probe.gate.resolve();
    expect((await holder).status).toBe(200);
    expect((await waiting).status).toBe(200);
    expect(checkedOut(s.pool)).toBe(0);
  });
});

describe('a server that accepts connections and never answers', () => {
  let proxy: TcpProxy;
  let s: Started;
  beforeAll(async () => {
    ({ proxy, s } = await startBehindProxy({ max: 2, connectionTimeoutMillis: 300 }));
  });
  afterAll(() => stopBehindProxy(s, proxy));

  it('fails acquisitions with DatabaseUnreachableError (503), not PoolExhaustedError, then recovers', async () => {
    await s.http().get('/pid').expect(200);
    const since = s.logger.messages.length;
    proxy.cut('blackhole');
    await s.logger.next(/an idle connection failed/, since);
    // Three at once for two slots: two open connections that hang, one waits in the queue.
    const responses = await Promise.all([1, 2, 3].map(() => s.http().get('/pid')));
    for (const response of responses) {
      expect(response.status).toBe(503);
      expect(response.headers['retry-after']).toBe('1');
      expect(response.body).toEqual({ statusCode: 503, message: 'Service Unavailable' });
    }
    expect(s.logger.matching(/is unreachable/)).toEqual([
      expect.stringMatching(
        new RegExp(`: Cannot connect datasource "default" to postgres@127\\.0\\.0\\.1:${proxy.port}/${db.name} after 1 attempt\\(s\\): no connection within \\d+ ms\\b`),
      ),
    ]);
    proxy.restore();
    await waitFor(async () => ((await s.http().get('/pid')).status === 200 ? true : undefined), 'the datasource to recover');
    // pg-pool may still be finishing the handshake of a connection it began during the outage for a
    // request that gave up meanwhile: counted open but not idle until then, it must end idle.
    await waitFor(async () => (checkedOut(s.pool) === 0 ? true : undefined), 'every connection to be back in the pool').catch(() => undefined);
    expect(checkedOut(s.pool)).toBe(0);
  });
});

describe('an outage told once in the log', () => {
  let proxy: TcpProxy;
  let s: Started;
  beforeAll(async () => {
    ({ proxy, s } = await startBehindProxy({ max: 2 }));
  });
  afterAll(() => stopBehindProxy(s, proxy));

  it('is not over while only a connection opened before it serves; a new connection ends it', async () => {
    const connection = s.app.get<PoolConnection>(getConnectionToken());
    const since = s.logger.messages.length;
    const outageLines = () => s.logger.messages.slice(since).filter((line) => /is unreachable|serves again/.test(line));
    // The startup check left one connection idle; hold it while another query needs a new one, twice.
    expect(s.pool.totalCount).toBe(1);
    proxy.refuse();
    for (const round of [1, 2]) {
      const old = await holdClient(connection); // served by the connection opened before the outage
      await expect(connection.query('SELECT 1')).rejects.toBeInstanceOf(DatabaseUnreachableError);
      await old.release();
      expect({ round, lines: outageLines() }).toEqual({ round, lines: [expect.stringMatching(/"default": is unreachable/)] });
    }
    proxy.restore();
    const old = await holdClient(connection);
    await connection.query('SELECT 1'); // on a new connection: the server answers again
    await old.release();
    expect(outageLines()).toEqual([
      expect.stringMatching(/"default": is unreachable/),
      expect.stringMatching(/"default": serves again after \d+ ms unreachable; 2 connection request\(s\) were refused meanwhile/),
    ]);
  });
});

describe('a failed query whose ReadyForQuery comes in a later read', () => {
  let proxy: TcpProxy;
  let s: Started;
  beforeAll(async () => {
    ({ proxy, s } = await startBehindProxy({ max: 1 }));
    await db.query('CREATE TABLE deferred_keys (id int UNIQUE DEFERRABLE INITIALLY DEFERRED)');
  });
  afterAll(() => stopBehindProxy(s, proxy));

  it('reports a failed COMMIT once the server says the transaction is over, and hands the client straight back', async () => {
    const connection = s.app.get<PoolConnection>(getConnectionToken());
    await connection.query('SELECT 1');
    // The pool's one client: the ReadyForQuery is let through once it has taken in the ErrorResponse.
    const [client] = (s.pool as unknown as { _clients: Array<{ connection: EventEmitter }> })._clients;
    const hold = proxy.holdReadyForQueryAfterError();
    client.connection.once('errorMessage', () => void hold.held.then(hold.release));
    // The duplicate is only checked at COMMIT, which fails (23505) and ends the transaction on the server.
    const outcome = connection
      .transaction(async (tx) => {
        await tx.query('INSERT INTO deferred_keys VALUES (1), (1)');
      })
      .then(
        () => 'committed',
        (error: unknown) => error,
      );
    expect(await outcome).toMatchObject({ code: '23505' });
    // Judged on the status from before the COMMIT ('in a transaction'), the client would wait for a ROLLBACK first.
    expect(checkedOut(s.pool)).toBe(0);
    await expect(connection.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
  });
});

describe.each(ADAPTERS)('leak detection (%s)', (adapter) => {
  let s: Started;
  beforeAll(async () => (s = await startApp(optionsFor({ max: 2, leakDetectionThreshold: 100 }), adapter)));
  afterAll(() => s?.app.close());
  afterEach(() => s.probe.gate.resolve());

  it('warns once about a client held past leakDetectionThreshold, with route, handler and stack, then that it came back', async () => {
    const response = s.http().get('/hold?token=s3cret').then((r) => r);
    await s.probe.held.promise;
    const warning = await s.logger.next(/may have leaked/, 0);
    expect(warning).toMatch(/^Datasource "default": a connection has been held for \d+ ms \(leakDetectionThreshold 100 ms\)/);
    // The path without its query string, which can carry tokens, and the handler.
    expect(warning).toContain(' by GET /hold (ReliabilityController.hold); it may have leaked.');
    expect(warning).not.toContain('s3cret');
    // The stack starts where the datasource was asked for the client and reaches the code that asked.
    expect(warning).toMatch(/Acquired at:\nError: acquired here\n\s+at Datasource\.lend [^]*(Connection|HttpRequest)Scope[^]*ReliabilityController/);
    const since = s.logger.messages.length;
    s.probe.gate.resolve();
    expect((await response).status).toBe(200);
    await s.logger.next(/a connection reported as possibly leaked came back after \d+ ms/, since);
    expect(s.logger.matching(/may have leaked/)).toHaveLength(1);
  });

  it('says nothing about clients returned in time', async () => {
    const before = s.logger.messages.length;
    await s.http().get('/pid').expect(200);
    expect(s.logger.messages.slice(before).filter((m) => /leak/.test(m))).toEqual([]);
  });
});

describe('maximum lifetime', () => {
  it('retires an idle connection past maxLifetimeSeconds when it is next acquired', async () => {
    const options = optionsFor({ max: 1, maxLifetimeSeconds: 0.3, maxLifetimeJitter: 0 });
    const s = await startApp(options);
    try {
      const first = await pidFrom(s);
      // The lifetime is the time to wait for; each poll acquires (and may retire) the connection.
      const next = await waitFor(async () => {
        const pid = await pidFrom(s);
        return pid === first ? undefined : pid;
      }, 'the connection to be replaced');
      expect(next).not.toBe(first);
      await waitFor(async () => ((await backendExists(first)) ? undefined : true), 'the retired backend to exit');
    } finally {
      await s.app.close();
    }
  });

  it('closes a connection that outlived its lifetime while checked out, when it is released', async () => {
    const s = await startApp(optionsFor({ max: 1, maxLifetimeSeconds: 0.2, maxLifetimeJitter: 0 }));
    try {
      // The handler outlives the connection's lifetime in the database.
      const pid = await pidFrom(s, '/sleep/0.4');
      await waitFor(async () => ((await backendExists(pid)) ? undefined : true), 'the expired backend to exit');
      expect(s.pool.totalCount).toBe(0);
    } finally {
      await s.app.close();
    }
  });
});

describe('other pool options', () => {
  it('opens min connections at startup', async () => {
    const options = optionsFor({ min: 3, max: 5 });
    const s = await startApp(options);
    try {
      expect({ total: s.pool.totalCount, idle: s.pool.idleCount }).toEqual({ total: 3, idle: 3 });
      expect(await applicationBackends(options.application_name, db.options)).toHaveLength(3);
    } finally {
      await s.app.close();
    }
  });

  it('passes statement_timeout to the server: the query is cancelled, the client kept', async () => {
    const s = await startApp(optionsFor({ max: 1, statement_timeout: 100 }));
    try {
      const pid = await pidFrom(s);
      await s.http().get('/sleep/5').expect(500);
      expect(await s.probe.outcome.promise).toMatchObject({ code: '57014' });
      await s.http().get('/pid').expect(200, String(pid));
    } finally {
      await s.app.close();
    }
  });

  it('ends a query after query_timeout on the client side and closes its connection', async () => {
    const s = await startApp(optionsFor({ max: 1, query_timeout: 100 }));
    try {
      const pid = await pidFrom(s);
      await s.http().get('/sleep/5').expect(503);
      const outcome = await s.probe.outcome.promise;
      expect(outcome).toBeInstanceOf(ConnectionFailedError);
      expect((outcome as Error).message).toMatch(/Query read timeout/);
      const next = await pidFrom(s);
      expect(next).not.toBe(pid);
    } finally {
      await s.app.close();
    }
  });
});

describe('shutdown', () => {
  /** An application context without HTTP; its work runs in ConnectionScope.run(). */
  async function startContext(options: PoolModuleOptions): Promise<{ app: INestApplicationContext; connection: PoolConnection; pool: Pool }> {
    const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot(options)] }).compile();
    moduleRef.useLogger(new CapturingLogger());
    const app = await moduleRef.init();
    return { app, connection: app.get(getConnectionToken()), pool: app.get(getPoolToken()) };
  }

  it('refuses an acquisition waiting for a client at once, and still waits for the client in use', async () => {
    // No acquire timeout: only the shutdown can end the wait.
    const { app, connection, pool } = await startContext(optionsFor({ max: 1, connectionTimeoutMillis: 0 }));
    const job = await holdClient(connection, async () => (await connection.query<{ one: number }>('SELECT 1 AS one')).rows[0].one);
    const waiting = ConnectionScope.run(() => connection.query('SELECT 1'));
    await waitFor(async () => (pool.waitingCount === 1 ? true : undefined), 'a second job to wait for the client');
    const closing = app.close();
    await expect(waiting).rejects.toBeInstanceOf(PoolClosedError);
    await expect(job.release()).resolves.toBe(1);
    await closing;
    expect(pool.ended).toBe(true);
  });

  it('hands a client back once when the drain timeout ends it during its reset', async () => {
    const { app, connection, pool } = await startContext(
      optionsFor({ max: 1, drainTimeoutMillis: 50, resetOnRelease: 'SELECT pg_sleep(0.5)' }),
    );
    // The scope ends; the client is being reset (half a second) when the shutdown comes.
    await ConnectionScope.run(() => connection.query('SELECT 1'));
    const removed = new Promise((resolve) => pool.once('remove', resolve));
    await app.close();
    await removed;
    // Let the interrupted reset settle: a second release would throw here, unhandled.
    await new Promise((resolve) => setImmediate(resolve));
    expect(pool.ended).toBe(true);
    expect(pool.totalCount).toBe(0);
  });
});
