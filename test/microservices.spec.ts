import { Controller, Module, type INestApplication, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientProxyFactory, MessagePattern, Transport, type ClientProxy, type MicroserviceOptions } from '@nestjs/microservices';
import { ExpressAdapter } from '@nestjs/platform-express';
import type { Pool } from 'pg';
import { lastValueFrom } from 'rxjs';
import { ConnectionScope, getPoolToken, PoolModule } from '../lib/index.js';
import { createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { FirstService, SecondService } from './support/pid-services.js';
import { freePort } from './support/free-port.js';
import { SERVICES, whenAvailable } from './support/services.js';

// Of this process: Redis channels and RabbitMQ queues are shared by everyone on the machine.
const PATTERN = `npp-test-pids-${process.pid}`;

@Controller()
class MessagesController {
  constructor(
    private readonly first: FirstService,
    private readonly second: SecondService,
  ) {}

  /** Three queries through two services, one message: one backend. */
  @MessagePattern(PATTERN)
  async pids(): Promise<{ pids: number[]; scoped: boolean }> {
    const pids = [await this.first.pid(), await this.second.pid(), await this.first.pid()];
    return { pids, scoped: ConnectionScope.current() !== undefined };
  }
}

type Setup = 'standalone' | 'hybrid, microservices started before listen()' | 'hybrid, microservices started after listen()';
const SETUPS: Setup[] = ['standalone', 'hybrid, microservices started before listen()', 'hybrid, microservices started after listen()'];

interface TransportCase {
  name: string;
  /** A service of the machine the transport needs, beside PostgreSQL. */
  service?: keyof typeof SERVICES;
  options(): Promise<MicroserviceOptions & { transport: Transport }>;
}

let queues = 0;
const TRANSPORTS: TransportCase[] = [
  { name: 'TCP', options: async () => ({ transport: Transport.TCP, options: { host: '127.0.0.1', port: await freePort() } }) },
  { name: 'Redis', service: 'redis', options: async () => ({ transport: Transport.REDIS, options: { ...SERVICES.redis } }) },
  {
    name: 'RabbitMQ',
    service: 'rabbitmq',
    options: async () => ({
      transport: Transport.RMQ,
      options: {
        urls: [`amqp://guest:guest@${SERVICES.rabbitmq.host}:${SERVICES.rabbitmq.port}`],
        queue: `${PATTERN}-${++queues}`,
        queueOptions: { durable: false, autoDelete: true },
      },
    }),
  },
];
const CASES = TRANSPORTS.flatMap((transport) => SETUPS.map((setup) => [transport.name, setup, transport] as const));

describe.each(CASES)('microservice handlers over %s (%s)', (name, setup, { service, options }) => {
  const test = service ? whenAvailable(service, `microservice handlers over ${name}`) : it;
  let db: TestDatabase;
  let app: INestApplication | INestMicroservice;
  let client: ClientProxy;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('microservices');
    @Module({ imports: [PoolModule.forRoot({ ...db.options, max: 8 })], controllers: [MessagesController], providers: [FirstService, SecondService] })
    class MessagesModule {}
    const transport = await options();
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
    client = ClientProxyFactory.create(transport as unknown as Parameters<typeof ClientProxyFactory.create>[0]);
    await client.connect();
  });

  afterAll(async () => {
    await client?.close();
    await app?.close();
    await db?.drop();
  });

  test('runs every message on one backend, concurrent messages on their own, and takes every client back', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => lastValueFrom(client.send<{ pids: number[]; scoped: boolean }>(PATTERN, {}))));
    for (const { pids, scoped } of results) {
      expect(scoped).toBe(true);
      expect(new Set(pids).size).toBe(1);
    }
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'every client back');
  });
});
