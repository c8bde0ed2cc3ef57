import { Controller, Get, Injectable, Sse, type INestApplication, type MessageEvent } from '@nestjs/common';
import { get as httpGet } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Pool, PoolClient } from 'pg';
import { concatMap, from, interval, map, take, type Observable } from 'rxjs';
import supertest from 'supertest';
import { getPoolToken, InjectConnection, PoolConnection, PoolModule } from '../lib/index.js';
import { createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { ADAPTERS, createHttpApp, getChunks } from './support/http-app.js';

const EVENTS = 15;
const EVERY_MS = 100;
const POOL_SIZE = 2;
const STREAMS = 4;

@Injectable()
class PidService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}
  async pid(): Promise<number> {
    return (await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  }
  client(): Promise<PoolClient> {
    return this.connection.getClient();
  }
}

@Controller()
class EventsController {
  constructor(private readonly service: PidService) {}

  /** An event stream that queries for every event, for 1.5 s. */
  @Sse('events')
  events(): Observable<MessageEvent> {
    return interval(EVERY_MS).pipe(
      take(EVENTS),
      concatMap(() => from(this.service.pid())),
      map((pid): MessageEvent => ({ data: String(pid) })),
    );
  }

  @Get('ordinary')
  ordinary(): Promise<number> {
    return this.service.pid();
  }

  /** A streamed body read through the raw client (as a cursor or COPY would be): that client stays until the end. */
  @Get('raw-stream')
  async *rawStream(): AsyncGenerator<string> {
    const client = await this.service.client();
    for (let i = 0; i < 3; i++) {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      yield `${rows[0].pid}\n`;
      await gate.promise;
    }
  }
}

let gate = new Deferred();

/** Opens an event stream; `first` resolves with the first event, `all` with every event once the stream ends. */
function openEventStream(port: number): { first: Promise<void>; all: Promise<string[]> } {
  let firstSeen!: () => void;
  const first = new Promise<void>((resolve) => (firstSeen = resolve));
  const all = new Promise<string[]>((resolve, reject) => {
    httpGet({ host: '127.0.0.1', port, path: '/events', headers: { accept: 'text/event-stream' } }, (response) => {
      const events: string[] = [];
      let buffered = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        buffered += chunk;
        for (let end = buffered.indexOf('\n\n'); end >= 0; end = buffered.indexOf('\n\n')) {
          const data = /^data: (.*)$/m.exec(buffered.slice(0, end));
          if (data) events.push(data[1]);
          buffered = buffered.slice(end + 2);
          if (events.length === 1) firstSeen();
        }
      });
      response.on('end', () => resolve(events));
    }).on('error', reject);
  });
  return { first, all };
}

describe.each(ADAPTERS)('long-lived answers (%s)', (adapter) => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('long_lived');
    app = await createHttpApp(
      {
        // A short acquire timeout: a request that waits for a client held by a stream fails instead of waiting it out.
        imports: [PoolModule.forRoot({ ...db.options, max: POOL_SIZE, connectionTimeoutMillis: 500 })],
        controllers: [EventsController],
        providers: [PidService],
      },
      adapter,
    );
    await app.listen(0, '127.0.0.1');
    pool = app.get<Pool>(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it(`serves ${STREAMS} event streams on a pool of ${POOL_SIZE}, and ordinary requests meanwhile`, async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    const streams = Array.from({ length: STREAMS }, () => openEventStream(port));
    await Promise.all(streams.map((stream) => stream.first));
    const ordinary: number[] = [];
    for (let i = 0; i < 5; i++) ordinary.push((await supertest(app.getHttpServer()).get('/ordinary')).status);
    expect(ordinary).toEqual([200, 200, 200, 200, 200]);
    for (const events of await Promise.all(streams.map((stream) => stream.all))) {
      expect(events).toHaveLength(EVENTS);
      for (const pid of events) expect(Number(pid)).toBeGreaterThan(0);
    }
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'every client back');
  });

  it('keeps the raw client of a streamed answer (a cursor, a COPY) until the stream ends', async () => {
    gate = new Deferred();
    const { next } = await getChunks(app, '/raw-stream');
    const first = await next();
    expect(pool.totalCount - pool.idleCount).toBe(1);
    gate.resolve();
    let rest = '';
    for (let chunk = await next(); chunk !== undefined; chunk = await next()) rest += chunk;
    expect(rest).toBe(`${first}${first}`);
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'the client back');
  });
});
