/**
 * Latency of a request's concurrent queries: four `pg_sleep(0.1)` at once
 * on the request's one client (they take turns) against `pool.query`
 * (a client each, side by side). `npm run bench:concurrent`.
 */
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import type { Pool } from 'pg';
import { ConnectionScope, getConnectionToken, getPoolToken, PoolModule, type PoolConnection } from '../lib/index.js';
import { dbConfig, ensureDatabase } from './config.js';

const ROUNDS = Number(process.env.CONCURRENT_ROUNDS ?? 5);
const SLEEP = 'SELECT pg_sleep(0.1)';

await ensureDatabase();
const app = await NestFactory.createApplicationContext(PoolModule.forRoot({ ...dbConfig(), max: 10 }), { logger: false });
const connection = app.get<PoolConnection>(getConnectionToken());
const pool = app.get<Pool>(getPoolToken());
const fourAtOnce = (query: (text: string) => Promise<unknown>): Promise<unknown> => Promise.all([1, 2, 3, 4].map(() => query(SLEEP)));
const ways: Array<[string, () => Promise<unknown>]> = [
  ["one request's client", () => ConnectionScope.run(() => fourAtOnce((text) => connection.query(text)))],
  ['pool.query', () => fourAtOnce((text) => pool.query(text))],
];
const times = new Map<string, number[]>(ways.map(([name]) => [name, []]));
// Interleaved rounds: each way once per round.
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, run] of ways) {
    const started = performance.now();
    await run();
    times.get(name)!.push(Math.round(performance.now() - started));
  }
}
for (const [name, millis] of times) console.log(`4 x pg_sleep(0.1) at once, ${name}: ${millis.join(', ')} ms`);
await app.close();
