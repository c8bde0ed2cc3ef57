// A minimal Nest 12 application of a user's, built against the packed package
// (.ci/packed-consumer.sh): one request through @InjectConnection.
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
}

@Controller()
class PidsController {
  constructor(private readonly backend: Backend) {}

  @Get()
  pids(): Promise<number[]> {
    return this.backend.pids();
  }
}

@Module({ imports: [PoolModule.forRoot({ connectionString: process.env.DATABASE_URL, max: 2 })], controllers: [PidsController], providers: [Backend] })
class AppModule {}

const app = await NestFactory.create(AppModule, { logger: ['error', 'warn'] });
await app.listen(0, '127.0.0.1');
const { port } = app.getHttpServer().address() as { port: number };
const pids = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as number[];
await app.close();
if (pids.length !== 2 || pids[0] !== pids[1]) throw new Error(`expected one backend for the request, got ${JSON.stringify(pids)}`);
console.log(`packed consumer: one request through @InjectConnection ran on backend ${pids[0]}`);
