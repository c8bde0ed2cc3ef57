import { Controller, Get, type INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { getPoolToken, InjectConnection, PoolConnection, PoolModule } from '../lib/index.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { backendStates, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { expectNoOpenTransaction } from './support/transactions.js';

// A connection that fails under a running request (the server shutting down or terminating the
// session, as a failover does) is the server's unavailability, not the handler's error: 503 with
// Retry-After, and a transaction that nothing of had taken effect runs again once on a new connection.

const STUCK = '/* in-flight */';

@Controller()
class InFlightController {
  attempts = 0;

  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Get('query')
  async query(): Promise<string> {
    await this.connection.query(`SELECT pg_sleep(30) ${STUCK}`);
    return 'slept';
  }

  /** Its first statement is cut on its first attempt; the attempt it runs again on a new connection inserts. */
  @Get('cut-first')
  async cutFirst(): Promise<number> {
    this.attempts = 0;
    return this.connection.transaction(async (tx) => {
      const attempt = ++this.attempts;
      if (attempt === 1) await tx.query(`SELECT pg_sleep(30) ${STUCK}`);
      await tx.query("INSERT INTO notes (body) VALUES ('cut first')");
      return attempt;
    });
  }

  /** Its first statement succeeded: the transaction is not run again. */
  @Get('cut-later')
  async cutLater(): Promise<number> {
    this.attempts = 0;
    return this.connection.transaction(async (tx) => {
      const attempt = ++this.attempts;
      await tx.query("INSERT INTO notes (body) VALUES ('cut later')");
      await tx.query(`SELECT pg_sleep(30) ${STUCK}`);
      return attempt;
    });
  }
}

describe('a connection that fails under a running request', () => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    db = await createTestDatabase('in_flight');
    await db.query('CREATE TABLE notes (id serial PRIMARY KEY, body text)');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 2 })],
      controllers: [InFlightController],
    }).compile();
    app = moduleRef.createNestApplication(new ExpressAdapter(), { logger });
    await app.init();
    pool = app.get<Pool>(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  /** Sends GET `path` and terminates the backend running its stuck statement, as a server shutting down does (57P01). */
  async function cutWhileRunning(path: string): Promise<supertest.Response> {
    const answer = supertest(app.getHttpServer())
      .get(path)
      .then((response) => response);
    const stuck = await waitFor(
      async () => (await backendStates(db.name)).find((b) => b.state === 'active' && b.query.includes(STUCK)),
      'the stuck statement to run',
    );
    await db.query('SELECT pg_terminate_backend($1)', [stuck.pid]);
    return answer;
  }

  it('answers 503 with Retry-After, logs the failure once and closes the connection', async () => {
    const before = logger.messages.length;
    const response = await cutWhileRunning('/query');
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('1');
    expect(response.body).toEqual({ statusCode: 503, message: 'Service Unavailable' });
    const logged = logger.messages.slice(before).filter((m) => /checked-out connection failed/.test(m));
    expect(logged).toEqual([expect.stringMatching(/terminating connection due to administrator command/)]);
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'the client back');
  });

  it('runs a transaction again, once, when its connection failed before any of its statements succeeded', async () => {
    const response = await cutWhileRunning('/cut-first');
    expect(response.status).toBe(200);
    expect(response.text).toBe('2');
    expect(response.headers['retry-after']).toBeUndefined();
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'the clients back');
    await expectNoOpenTransaction(pool, db.name);
  });

  it('does not run it again once a statement of it succeeded: 503, and nothing of it kept', async () => {
    const response = await cutWhileRunning('/cut-later');
    expect(response.status).toBe(503);
    expect(response.headers['retry-after']).toBe('1');
    expect(app.get(InFlightController).attempts).toBe(1);
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'the clients back');
    await expectNoOpenTransaction(pool, db.name);
    expect((await db.query("SELECT count(*)::int AS n FROM notes WHERE body = 'cut later'")).rows[0].n).toBe(0);
  });
});
