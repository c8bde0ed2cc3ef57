/**
 * The application the fault suite attacks, run in a child process of its own
 * (see app-process.ts) so that a crash is a process exit the suite can count,
 * and shutdown is a real SIGTERM. Configured by APP_CONFIG (JSON);
 * prints `{"listening":PORT}` once it serves.
 */
import {
  Controller,
  Get,
  HttpException,
  Inject,
  InternalServerErrorException,
  Module,
  Param,
  ServiceUnavailableException,
  type INestApplication,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { writeSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { Datasource } from '../../../lib/datasource/datasource.js';
import { InjectConnection, PoolConnection, PoolModule, PoolUnavailableError, QuietPoolError, type PoolModuleOptions } from '../../../lib/index.js';
import { getDatasourceToken } from '../../../lib/pool.utils.js';

export interface FaultAppConfig {
  pool: PoolModuleOptions;
  adapter?: 'express' | 'fastify';
}

/**
 * What /__stats reports: the pool's counts, the clients the module lent out,
 * and the connections it counts as open (from which it tells an exhausted
 * pool from an unreachable server), which must match the pool's total.
 */
export interface FaultAppStats {
  total: number;
  idle: number;
  waiting: number;
  leased: number;
  connected: number;
  /** /abandon requests whose un-awaited write has had its moment. */
  lateWritesDue: number;
}

/**
 * Puts the message of the module's 503s in the answer (Nest's default filter
 * sends their status text alone) and names any other error in the 500 it
 * becomes, so the suite can count failures by kind; a 499 goes through as is.
 */
function explain(error: unknown): never {
  if (error instanceof PoolUnavailableError) throw new ServiceUnavailableException(error.message);
  if (error instanceof HttpException || error instanceof QuietPoolError) throw error;
  const { constructor, message, code } = error as { constructor: { name: string }; message: string; code?: string };
  throw new InternalServerErrorException(`${constructor.name}${code ? ` ${code}` : ''}: ${message}`);
}

@Controller()
class FaultController {
  private lateWritesDue = 0;

  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    @Inject(getDatasourceToken()) private readonly datasource: Datasource,
  ) {}

  /** One short autocommit write; answers the token it stored. */
  @Get('write/:token')
  async write(@Param('token') token: string): Promise<string> {
    try {
      const { rows } = await this.connection.query<{ token: string }>(
        'INSERT INTO hits (token) SELECT $1::text FROM pg_sleep(0.005) RETURNING token',
        [token],
      );
      return rows[0].token;
    } catch (error) {
      explain(error);
    }
  }

  /** Holds its client for `ms` inside a transaction, then commits a row. */
  @Get('slow/:ms/:token')
  async slow(@Param('ms') ms: string, @Param('token') token: string): Promise<string> {
    try {
      await this.connection.query('BEGIN');
      await this.connection.query('SELECT pg_sleep($1)', [Number(ms) / 1000]);
      const { rows } = await this.connection.query<{ token: string }>('INSERT INTO hits (token) VALUES ($1) RETURNING token', [token]);
      await this.connection.query('COMMIT');
      return rows[0].token;
    } catch (error) {
      explain(error);
    }
  }

  /**
   * Answers at once and writes the token 20 ms later, without awaiting it:
   * fire-and-forget work that outlives its request (an audit line, an event
   * listener), which must land and must not crash the process.
   */
  @Get('later/:token')
  later(@Param('token') token: string): string {
    void delay(20).then(() => this.connection.query('INSERT INTO hits (token) VALUES ($1)', [token]));
    return 'accepted';
  }

  /**
   * Starts a write 400 ms later without awaiting it (a bare promise, left
   * unhandled), then sleeps 5 s on the server: the client hangs up before.
   * The query is cancelled; the write runs or is refused as
   * `queriesAfterHangUp` says, and must never crash the process. 200 ms
   * after the write, `lateWritesDue` counts it.
   */
  @Get('abandon/:token')
  async abandon(@Param('token') token: string): Promise<string> {
    setTimeout(() => void this.connection.query('INSERT INTO hits (token) VALUES ($1)', [token]), 400);
    setTimeout(() => this.lateWritesDue++, 600);
    await this.connection.query('SELECT pg_sleep(5)');
    return token;
  }

  @Get('__stats')
  stats(): FaultAppStats {
    const { total, idle, waiting } = this.datasource.counts();
    // The module's own count of open connections (it tells exhausted from
    // unreachable): read here only to check it never drifts from the pool's.
    const connected = this.datasource.stats.connectedCount();
    return { total, idle, waiting, leased: this.datasource.leasedCount, connected, lateWritesDue: this.lateWritesDue };
  }
}

/**
 * Notes the path of every request the HTTP server accepts (its 'request'
 * event) and prints them as `{"received":[...]}` when the process exits: a
 * request the client saw reset is in it only if the server had taken it.
 */
function reportReceivedAtExit(server: Server): void {
  const received: string[] = [];
  server.prependListener('request', (request) => received.push(request.url ?? ''));
  process.once('exit', () => writeSync(1, `${JSON.stringify({ received })}\n`));
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.APP_CONFIG ?? '{}') as FaultAppConfig;

  @Module({ imports: [PoolModule.forRoot(config.pool)], controllers: [FaultController] })
  class FaultAppModule {}

  // Only the adapter in use is loaded: each costs a good part of a second to import.
  const adapter =
    config.adapter === 'fastify'
      ? new (await import('@nestjs/platform-fastify')).FastifyAdapter()
      : new (await import('@nestjs/platform-express')).ExpressAdapter();
  const app: INestApplication = await NestFactory.create(FaultAppModule, adapter, { logger: ['error', 'warn'] });
  // Exits with 0 once the shutdown is done (Nest's default raises the signal again), after printing what it received.
  app.enableShutdownHooks([], { useProcessExit: true });
  reportReceivedAtExit(app.getHttpServer() as Server);
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  process.stdout.write(`${JSON.stringify({ listening: port })}\n`);
}

await main();
