import type { INestApplication } from '@nestjs/common';
import { WsAdapter } from '@nestjs/platform-ws';
import { SubscribeMessage, WebSocketGateway, type WsResponse } from '@nestjs/websockets';
import type { AddressInfo } from 'node:net';
import type { Pool } from 'pg';
import WebSocket from 'ws';
import { ConnectionScope, getPoolToken, PoolModule } from '../lib/index.js';
import { createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { FirstService, SecondService } from './support/pid-services.js';
import { ADAPTERS, createHttpApp } from './support/http-app.js';

interface Pids {
  id: number;
  pids: number[];
  scoped: boolean;
}

@WebSocketGateway()
class PidsGateway {
  constructor(
    private readonly first: FirstService,
    private readonly second: SecondService,
  ) {}

  /** Three queries through two services, one message: one backend. */
  @SubscribeMessage('pids')
  async pids(_client: unknown, id: number): Promise<WsResponse<Pids>> {
    const pids = [await this.first.pid(), await this.second.pid(), await this.first.pid()];
    return { event: 'pids', data: { id, pids, scoped: ConnectionScope.current() !== undefined } };
  }
}

describe.each(ADAPTERS)('WebSocket gateway messages (%s)', (adapter) => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('websockets');
    app = await createHttpApp({ imports: [PoolModule.forRoot({ ...db.options, max: 8 })], providers: [PidsGateway, FirstService, SecondService] }, adapter, (created) =>
      created.useWebSocketAdapter(new WsAdapter(created)),
    );
    await app.listen(0, '127.0.0.1');
    pool = app.get<Pool>(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('runs every message on one backend, concurrent messages on their own, and takes every client back', async () => {
    const { port } = app.getHttpServer().address() as AddressInfo;
    const socket = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise((resolve, reject) => socket.once('open', resolve).once('error', reject));
    const answers = new Map<number, Pids>();
    const all = new Promise<void>((resolve) =>
      socket.on('message', (raw: Buffer) => {
        const { data } = JSON.parse(raw.toString()) as { data: Pids };
        answers.set(data.id, data);
        if (answers.size === 8) resolve();
      }),
    );
    for (let id = 0; id < 8; id++) socket.send(JSON.stringify({ event: 'pids', data: id }));
    await all;
    socket.close();
    for (const { pids, scoped } of answers.values()) {
      expect(scoped).toBe(true);
      expect(new Set(pids).size).toBe(1);
    }
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'every client back');
  });
});
