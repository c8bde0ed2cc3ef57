import supertest from 'supertest';
import { createSampleApp, type SampleApp } from '../sample-app/sample-app.js';
import { CapturingLogger } from './support/capturing-logger.js';
import type { Pool } from 'pg';
import { getPoolToken } from '../lib/index.js';
import { waitFor } from './support/database.js';
import { freePort } from './support/free-port.js';
import { requestToHangUp } from './support/http-app.js';

describe('sample app with no database server', () => {
  let sample: SampleApp;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    const port = await freePort();
    sample = await createSampleApp({ port: 0, localPostgres: { host: '127.0.0.1', port } }, logger);
  });

  afterAll(() => sample?.close());

  it('starts an embedded PostgreSQL and says so in one line', () => {
    const lines = logger.messages.filter((line) => line.includes('embedded PostgreSQL'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^No DATABASE_URL and no PostgreSQL on 127\.0\.0\.1:\d+: started an embedded PostgreSQL \d+\.\d+ on 127\.0\.0\.1:\d+ \(scram-sha-256/);
  });

  it('serves other requests while one runs a long query, as a real server does', async () => {
    const pool = sample.app.get<Pool>(getPoolToken());
    const sleeping = async (): Promise<number> =>
      Number((await pool.query(`SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep%'`)).rows[0].n);
    const slow = await requestToHangUp(sample.app, '/slow/10');
    await waitFor(async () => ((await sleeping()) === 1 ? true : undefined), 'the slow query to run');
    await supertest(sample.app.getHttpServer()).get('/notes').expect(200);
    // Answered while the slow query still runs on its own backend (a server that serialises connections would wait for it).
    expect(await sleeping()).toBe(1);
    slow.hangUp();
    await waitFor(async () => ((await sleeping()) === 0 ? true : undefined), 'the slow query to be cancelled');
  });

  it('answers the notes CRUD round trip and /health', async () => {
    const http = supertest(sample.app.getHttpServer());
    const created = await http.post('/notes').send({ title: 'embedded', body: 'works' }).expect(201);
    const id = created.body.id as number;
    await http.get(`/notes/${id}`).expect(200, created.body);
    expect((await http.get('/notes').expect(200)).body).toEqual([created.body]);
    await http.delete(`/notes/${id}`).expect(204);
    await http.get(`/notes/${id}`).expect(404);
    expect((await http.get('/audit').expect(200)).body).toHaveLength(2);
    expect((await http.get('/health').expect(200)).body.status).toBe('ok');
  });
});
