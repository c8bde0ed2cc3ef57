import { Controller, Get, StreamableFile, type INestApplication } from '@nestjs/common';
import { Agent, get as httpGet, type IncomingMessage } from 'node:http';
import { PassThrough } from 'node:stream';
import type { Pool } from 'pg';
import { PoolModule, type PoolConnection } from '../lib/index.js';
import { getConnectionToken, getPoolToken, settlesWithin } from '../lib/pool.utils.js';
import { createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { holdClient } from './support/hold-client.js';
import { ADAPTERS, createHttpApp, listeningPort } from './support/http-app.js';

// The HTTP part of a graceful shutdown, in process: what the fault suite's
// SIGTERM test under load (test/faults/) cannot time, a connection whose
// answer had begun when the shutdown came.

let rest = new Deferred();

@Controller()
class StreamController {
  /** Sends a first chunk at once and the rest when the test says. */
  @Get('stream')
  stream(): StreamableFile {
    const body = new PassThrough();
    body.write('first,');
    void rest.promise.then(() => body.end('last'));
    return new StreamableFile(body);
  }
}

function bodyOf(response: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => (body += chunk));
    response.on('end', () => resolve(body));
    response.on('error', reject);
  });
}

describe.each(ADAPTERS)('shutdown of the HTTP server (%s)', (adapter) => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase(`graceful_shutdown_${adapter}`);
  });
  afterAll(() => db?.drop());

  it('closes a kept-alive connection whose answer had begun once that answer ends, before the pools close', async () => {
    rest = new Deferred();
    const app: INestApplication = await createHttpApp(
      { imports: [PoolModule.forRoot({ ...db.options, drainTimeoutMillis: 10_000 })], controllers: [StreamController] },
      adapter,
    );
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      // Longer than the test: only the drain can close the kept-alive connection.
      app.getHttpServer().keepAliveTimeout = 60_000;
      const port = await listeningPort(app);
      const response = await new Promise<IncomingMessage>((resolve, reject) =>
        httpGet({ host: '127.0.0.1', port, path: '/stream', agent }, resolve).on('error', reject),
      );
      expect(response.headers.connection).toBe('keep-alive');
      const socketClosed = new Promise((resolve) => response.socket.once('close', resolve));
      const body = bodyOf(response);
      // Work holding a client keeps the pools from closing (for up to drainTimeoutMillis) after the drain.
      const held = await holdClient(app.get<PoolConnection>(getConnectionToken()));
      const pool = app.get<Pool>(getPoolToken());

      const closing = app.close();
      await waitFor(async () => (app.getHttpServer().listening ? undefined : true), 'the server to stop accepting');
      rest.resolve();
      expect(await body).toBe('first,last');
      // Closed by the drain as the answer ended: Nest's own close of the server comes only after the pools'.
      expect(await settlesWithin(socketClosed, 2000)).toBe(true);
      expect(pool.ended).toBe(false);
      await held.release();
      await closing;
      expect(pool.ended).toBe(true);
    } finally {
      agent.destroy();
      rest.resolve();
      await app.close();
    }
  });
});
