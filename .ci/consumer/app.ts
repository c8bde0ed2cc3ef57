// A minimal Nest 12 application of a user's, built against the packed package
// (.ci/packed-consumer.sh): one request through @InjectConnection, then the habit every pg user
// brings (release() in finally on the raw client) and requests after it.
import 'reflect-metadata';
import { Controller, Get, Injectable, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { InjectConnection, PoolConnection, PoolModule } from 'nestjs-pg-pool';
// The subpaths' types resolve through the exports map (their optional peers are not installed here).
import type { PoolHealthIndicator } from 'nestjs-pg-pool/health';
import type { PoolMetricsModuleOptions } from 'nestjs-pg-pool/metrics';
import type { PoolTelemetryModuleOptions } from 'nestjs-pg-pool/otel';

export type Subpaths = [PoolHealthIndicator, PoolMetricsModuleOptions, PoolTelemetryModuleOptions];

@Injectable()
class Backend {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async pids(): Promise<number[]> {
    const pid = async (): Promise<number> => (await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    return [await pid(), await pid()];
  }

  async releasedInFinally(): Promise<number> {
    const client = await this.connection.getClient();
    try {
      return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    } finally {
      client.release();
    }
  }
}

@Controller()
class PidsController {
  constructor(private readonly backend: Backend) {}

  @Get()
  pids(): Promise<number[]> {
    return this.backend.pids();
  }

  @Get('raw')
  raw(): Promise<number> {
    return this.backend.releasedInFinally();
  }
}

@Module({ imports: [PoolModule.forRoot({ connectionString: process.env.DATABASE_URL, max: 2 })], controllers: [PidsController], providers: [Backend] })
class AppModule {}

const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
await app.listen(0, '127.0.0.1');
const { port } = app.getHttpServer().address() as { port: number };
const pids = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as number[];
if (pids.length !== 2 || pids[0] !== pids[1]) throw new Error(`expected one backend for the request, got ${JSON.stringify(pids)}`);
// On a pool of 2, three rounds of the habit: a double release or a leaked client would show here.
const statuses: number[] = [];
for (let i = 0; i < 3; i++) statuses.push((await fetch(`http://127.0.0.1:${port}/raw`)).status, (await fetch(`http://127.0.0.1:${port}/`)).status);
await app.close();
if (statuses.some((status) => status !== 200)) throw new Error(`release() in finally broke later requests: ${statuses.join(', ')}`);
console.log(`packed consumer: one request through @InjectConnection ran on backend ${pids[0]}; release() in finally, then requests: ${statuses.join(', ')}`);
