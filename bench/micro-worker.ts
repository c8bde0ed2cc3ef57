import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import pg from 'pg';
import { ConnectionScope, getConnectionToken, PoolConnection, PoolModule } from '../lib/index.js';
import { config, dbConfig } from './config.js';
import { VARIANTS, type Variant } from './micro-variants.js';

/**
 * One microbenchmark variant in a fresh process (so a variant that never
 * opens a scope runs without AsyncLocalStorage enabled, as it would in an app
 * without the module): `node micro-worker.js <variant>`. Runs
 * MICRO_CONCURRENCY loops for 1 s of warm-up and MICRO_SECONDS measured,
 * prints one JSON line.
 */


async function setUp(variant: Variant): Promise<{ op: () => Promise<unknown>; close: () => Promise<void> }> {
  const options = { ...dbConfig(), max: config.poolSize };
  if (variant.startsWith('pool.')) {
    const pool = new pg.Pool(options);
    const op =
      variant === 'pool.query'
        ? () => pool.query('SELECT 1')
        : async () => {
            const client = await pool.connect();
            client.release();
          };
    return { op, close: () => pool.end() };
  }
  const app = await NestFactory.createApplicationContext(PoolModule.forRoot({ ...options, retryAttempts: 0 }), { logger: ['error', 'warn'] });
  const connection = app.get<PoolConnection>(getConnectionToken());
  const op =
    variant === 'scope.acquire+release'
      ? () => ConnectionScope.run(() => connection.getClient())
      : variant === 'scope.query'
        ? () => ConnectionScope.run(() => connection.query('SELECT 1'))
        : () => connection.query('SELECT 1');
  return { op, close: () => app.close() };
}

async function loop(op: () => Promise<unknown>, seconds: number): Promise<number> {
  const deadline = performance.now() + seconds * 1000;
  let count = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await op();
      count++;
    }
  };
  await Promise.all(Array.from({ length: config.microConcurrency }, worker));
  return count;
}

async function main(): Promise<void> {
  const variant = process.argv[2] as Variant;
  if (!(variant in VARIANTS)) throw new Error(`unknown variant ${variant}`);
  const { op, close } = await setUp(variant);
  await loop(op, 1);
  const cpu = process.cpuUsage();
  const start = performance.now();
  const ops = await loop(op, config.microSeconds);
  const elapsed = (performance.now() - start) / 1000;
  const used = process.cpuUsage(cpu);
  await close();
  process.stdout.write(`${JSON.stringify({ variant, ops, opsPerSec: ops / elapsed, cpuUsPerOp: (used.user + used.system) / ops })}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
