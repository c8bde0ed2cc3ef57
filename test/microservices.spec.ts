import { Controller, Module, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxyFactory, MessagePattern, Transport, type ClientProxy } from '@nestjs/microservices';
import { ExpressAdapter } from '@nestjs/platform-express';
import type { Pool } from 'pg';
import { lastValueFrom } from 'rxjs';
import { ConnectionScope, getPoolToken, PoolModule } from '../lib/index.js';
import { createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { FirstService, SecondService } from './support/pid-services.js';
import { freePort } from './support/free-port.js';

@Controller()
class MessagesController {
  constructor(
    private readonly first: FirstService,
    private readonly second: SecondService,
  ) {}

  /** Three queries through two services, one message: one backend. */
  @MessagePattern('pids')
  async pids(): Promise<{ pids: number[]; scoped: boolean }> {
    const pids = [await this.first.pid(), await this.second.pid(), await this.first.pid()];
    return { pids, scoped: ConnectionScope.current() !== undefined };
  }
}

type Setup = 'standalone' | 'hybrid, microservices started before listen()' | 'hybrid, microservices started after listen()';
const SETUPS: Setup[] = ['standalone', 'hybrid, microservices started before listen()', 'hybrid, microservices started after listen()'];

describe.each(SETUPS)('microservice handlers over TCP (%s)', (setup) => {
  let db: TestDatabase;
  let app: INestApplication | INestMicroservice;
  let client: ClientProxy;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('microservices');
    @Module({ imports: [PoolModule.forRoot({ ...db.options, max: 8 })], controllers: [MessagesController], providers: [FirstService, SecondService] })
    class MessagesModule {}
    const port = await freePort();
    const transport = { transport: Transport.TCP as const, options: { host: '127.0.0.1', port } };
    if (setup === 'standalone') {
      const microservice = await NestFactory.createMicroservice(MessagesModule, { ...transport, logger: false });
      await microservice.listen();
      app = microservice;
    } else {
      const hybrid = await NestFactory.create(MessagesModule, new ExpressAdapter(), { logger: false });
      hybrid.connectMicroservice(transport);
      if (setup.includes('before')) await hybrid.startAllMicroservices();
      await hybrid.listen(0, '127.0.0.1');
      if (setup.includes('after')) await hybrid.startAllMicroservices();
      app = hybrid;
    }
    pool = app.get<Pool>(getPoolToken());
    client = ClientProxyFactory.create(transport);
    await client.connect();
  });

  afterAll(async () => {
    await client?.close();
    await app?.close();
    await db?.drop();
  });

  it('runs every message on one backend, concurrent messages on their own, and takes every client back', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => lastValueFrom(client.send<{ pids: number[]; scoped: boolean }>('pids', {}))));
    for (const { pids, scoped } of results) {
      expect(scoped).toBe(true);
      expect(new Set(pids).size).toBe(1);
    }
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'every client back');
  });
});
