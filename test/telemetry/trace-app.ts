import 'reflect-metadata';
import { Controller, Get, Injectable, Module, Param } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { ConnectionScope, InjectConnection, PoolConnection, PoolModule, Transactional, type PoolModuleOptions } from '../../lib/index.js';

/** What the test passes in APP_CONFIG. */
export interface TraceAppConfig {
  adapter: 'express' | 'fastify';
  pool: PoolModuleOptions;
}

/** A span as /__spans reports it. */
export interface ReportedSpan {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  kind: number;
  /** The query's text for pg query spans, the request's target for server spans. */
  text: string;
}

const config = JSON.parse(process.env.APP_CONFIG ?? '{}') as TraceAppConfig;

/** Each query names its request in a comment, so that the test can tell whose query a span is. */
@Injectable()
class Queries {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async tagged(id: string, where: string): Promise<void> {
    await this.connection.query(`SELECT /* r${id} ${where} */ pg_sleep(0.01)`);
  }

  @Transactional()
  async inTransactional(id: string): Promise<void> {
    await this.tagged(id, 'transactional-1');
    await this.tagged(id, 'transactional-2');
  }
}

@Controller()
class TraceController {
  constructor(
    private readonly queries: Queries,
    @InjectConnection() private readonly connection: PoolConnection,
  ) {}

  @Get('plain/:id')
  async plain(@Param('id') id: string): Promise<string> {
    await this.queries.tagged(id, 'plain-1');
    await this.queries.tagged(id, 'plain-2');
    await this.queries.tagged(id, 'plain-3');
    return 'ok';
  }

  @Get('transaction/:id')
  async transaction(@Param('id') id: string): Promise<string> {
    await this.connection.transaction(async () => {
      await this.queries.tagged(id, 'transaction-1');
      await this.queries.tagged(id, 'transaction-2');
    });
    await this.queries.inTransactional(id);
    return 'ok';
  }

  @Get('run/:id')
  async run(@Param('id') id: string): Promise<string> {
    await ConnectionScope.run(async () => {
      await this.queries.tagged(id, 'run-1');
      await this.queries.tagged(id, 'run-2');
    });
    return 'ok';
  }

  @Get('__spans')
  spans(): ReportedSpan[] {
    const exporter = (globalThis as { nppSpanExporter?: InMemorySpanExporter }).nppSpanExporter!;
    return exporter.getFinishedSpans().map((span) => ({
      name: span.name,
      traceId: span.spanContext().traceId,
      spanId: span.spanContext().spanId,
      parentSpanId: span.parentSpanContext?.spanId,
      kind: span.kind,
      text: String(span.attributes['db.query.text'] ?? span.attributes['db.statement'] ?? span.attributes['url.path'] ?? span.attributes['http.target'] ?? ''),
    }));
  }
}

@Module({ imports: [PoolModule.forRoot(config.pool)], controllers: [TraceController], providers: [Queries] })
class TraceAppModule {}

const app = await NestFactory.create(TraceAppModule, config.adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(), { logger: ['error', 'warn'] });
await app.listen(0, '127.0.0.1');
process.stdout.write(`${JSON.stringify({ listening: (app.getHttpServer().address() as { port: number }).port })}\n`);
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));
