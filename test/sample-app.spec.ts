import type { Pool } from 'pg';
import supertest from 'supertest';
import { getConnectionToken, getPoolToken, PoolConnection } from '../lib/index.js';
import { createSampleApp, type SampleApp } from '../sample-app/sample-app.js';
import { connectionUrl, serverAddress } from './support/connection-url.js';
import { adminQuery, backendStates, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { requestToHangUp } from './support/http-app.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { holdClient } from './support/hold-client.js';
import { parseExposition } from './support/prometheus.js';
import { TcpProxy } from './support/tcp-proxy.js';

/** Resolves once `pool` has closed every connection. */
function poolEmptied(pool: Pool): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (pool.totalCount > 0) return;
      pool.off('remove', check);
      resolve();
    };
    pool.on('remove', check);
    check();
  });
}

describe('sample app on a PostgreSQL server', () => {
  let db: TestDatabase;
  let sample: SampleApp;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    db = await createTestDatabase('sample');
    // No AUDIT_DATABASE_URL: the app creates `<database>_audit` beside the default one.
    sample = await createSampleApp({ databaseUrl: connectionUrl(db.options), port: 0, localPostgres: serverAddress() }, logger);
  });

  afterAll(async () => {
    await sample?.close();
    if (db) await adminQuery(`DROP DATABASE IF EXISTS ${db.name}_audit WITH (FORCE)`);
    await db?.drop();
  });

  const http = (): ReturnType<typeof supertest> => supertest(sample.app.getHttpServer());

  it('creates the audit database, beside the default one, and uses it for the audit datasource', async () => {
    expect(logger.messages).toContain(`Created database "${db.name}_audit"`);
    const { rows } = await sample.app.get<Pool>(getPoolToken('audit')).query<{ db: string }>('SELECT current_database() AS db');
    expect(rows[0].db).toBe(`${db.name}_audit`);
  });

  it('runs the notes CRUD round trip, audited in the second database', async () => {
    const created = await http().post('/notes').send({ title: 'first', body: 'hello' }).expect(201);
    expect(created.body).toMatchObject({ id: expect.any(Number), title: 'first', body: 'hello' });
    const id = created.body.id as number;
    await http().get(`/notes/${id}`).expect(200, created.body);
    expect((await http().get('/notes').expect(200)).body).toEqual([created.body]);
    await http().post('/notes').send({ body: 'no title' }).expect(400);
    await http().delete(`/notes/${id}`).expect(204);
    await http().get(`/notes/${id}`).expect(404);
    const audit = await http().get('/audit').expect(200);
    expect(audit.body.map((event: { action: string; note_id: number }) => [event.action, event.note_id])).toEqual([
      ['deleted', id],
      ['created', id],
    ]);
  });

  it('answers GET / with the routes, and every route without a parameter it lists answers', async () => {
    const http = supertest(sample.app.getHttpServer());
    const { body } = await http.get('/').expect(200);
    expect(body.links).toEqual({ health: '/health', metrics: '/metrics' });
    const plainGets = (body.routes as string[]).map((route) => /^GET (\/[a-z]+)$/.exec(route)?.[1]).filter((path) => path !== undefined);
    expect(plainGets).toEqual(['/notes', '/audit', '/health', '/metrics']);
    for (const path of plainGets) await http.get(path).expect(200);
  });

  it('answers /health with 200 and both datasources up', async () => {
    const { body } = await http().get('/health').expect(200);
    expect(body.status).toBe('ok');
    for (const name of ['default', 'audit']) {
      expect(body.details[name]).toMatchObject({ status: 'up', responseTime: expect.any(Number) });
      expect(body.details[`${name}_pool`]).toMatchObject({ status: 'up', inUse: 0, waiting: 0 });
    }
  });

  it('stays quiet when a client hangs up on a slow request: its query is cancelled, nothing is logged', async () => {
    const pool = sample.app.get<Pool>(getPoolToken());
    const logged = logger.messages.length;
    const request = await requestToHangUp(sample.app, '/slow/5');
    await waitFor(
      async () => ((await backendStates(db.name)).some((b) => b.state === 'active' && b.query.includes('pg_sleep')) ? true : undefined),
      'the slow query to run',
    );
    request.hangUp();
    await waitFor(
      async () => ((await backendStates(db.name)).some((b) => b.state === 'active' && b.query.includes('pg_sleep')) ? undefined : true),
      'the slow query to be cancelled',
    );
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'the connection to be back');
    expect(logger.messages.slice(logged)).toEqual([]);
    expect(logger.errors).toEqual([]);
  });

  it('serves live /metrics: a held connection shows as active', async () => {
    const held = await holdClient(sample.app.get<PoolConnection>(getConnectionToken()));
    const during = parseExposition((await http().get('/metrics').expect(200).expect('Content-Type', /^text\/plain/)).text);
    expect(during.get('pg_pool_connections{datasource="default",state="active"}')).toBe(1);
    expect(during.get('pg_pool_connections{datasource="audit",state="active"}')).toBe(0);
    // The CRUD test's audit writes: one connection lent per request.
    expect(during.get('pg_pool_acquire_seconds_count{datasource="audit"}')).toBeGreaterThanOrEqual(2);

    await held.release();
    const after = parseExposition((await http().get('/metrics').expect(200)).text);
    expect(after.get('pg_pool_connections{datasource="default",state="active"}')).toBe(0);
  });
});

describe('sample app with a datasource down', () => {
  let main: TestDatabase;
  let audit: TestDatabase;
  let proxy: TcpProxy;
  let sample: SampleApp;

  beforeAll(async () => {
    [main, audit] = await Promise.all([createTestDatabase('sample_main'), createTestDatabase('sample_audit')]);
    // The audit database is reached through a proxy, whose port is then closed.
    proxy = await TcpProxy.start(serverAddress());
    sample = await createSampleApp(
      {
        databaseUrl: connectionUrl(main.options),
        auditDatabaseUrl: connectionUrl(audit.options, proxy.port),
        port: 0,
        localPostgres: serverAddress(),
      },
      new CapturingLogger(),
    );
  });

  afterAll(async () => {
    await sample?.close();
    await proxy?.close();
    await Promise.all([main?.drop(), audit?.drop()]);
  });

  it('answers /health with 503 naming the datasource on a closed port', async () => {
    const emptied = poolEmptied(sample.app.get<Pool>(getPoolToken('audit')));
    await proxy.close();
    await emptied;
    const { body } = await supertest(sample.app.getHttpServer()).get('/health').expect(503);
    expect(body.status).toBe('error');
    expect(Object.keys(body.error)).toEqual(['audit']);
    expect(body.error.audit).toMatchObject({ status: 'down', message: 'connection refused' });
    expect(body.details.default.status).toBe('up');
    expect(body.details.audit_pool.status).toBe('up');
  });
});
