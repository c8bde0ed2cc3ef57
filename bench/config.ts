import pg from 'pg';

/**
 * Every knob of `npm run bench`, from the environment. Defaults keep a full
 * run (comparison, microbenchmark, short soak) under about ten minutes on a
 * 2-core machine.
 */
function num(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a non-negative number, got "${raw}"`);
  return value;
}

function list(name: string, fallback: string[]): string[] {
  const raw = process.env[name];
  return raw ? raw.split(',').map((s) => s.trim()).filter(Boolean) : fallback;
}

function oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) throw new Error(`${name} must be one of ${allowed.join(', ')}, got "${raw}"`);
  return raw as T;
}

/** What the route of every contender does (BENCH_HANDLER), as the results describe it. */
export const HANDLERS = {
  'one-query': 'one SELECT 1',
  'two-queries-5ms': 'SELECT 1, 5 ms of other work, SELECT 1',
} as const;
export type Handler = keyof typeof HANDLERS;

export const config = {
  /** Which parts to run: compare, micro, soak; instructions when asked for. */
  parts: list('BENCH_PARTS', ['compare', 'micro', 'soak']),
  /** Interleaved rounds of the HTTP comparison (at least 3 make a median). */
  rounds: num('BENCH_ROUNDS', 3),
  /** Measured seconds per contender per round. */
  duration: num('BENCH_DURATION', 6),
  /** Warm-up seconds per contender per round, not counted. */
  warmup: num('BENCH_WARMUP', 2),
  /** Concurrent HTTP connections of autocannon. */
  connections: num('BENCH_CONNECTIONS', 50),
  /**
   * Fixed load, requests per second (0: as fast as the server answers). Below
   * every contender's capacity, CPU per request then compares what each does
   * per request, without the batching a faster server gets under saturation.
   */
  rate: num('BENCH_RATE', 0),
  /** `pg.Pool` size of every pooled contender. */
  poolSize: num('BENCH_POOL_SIZE', 10),
  /** Clients of `pgbench -S`: the database clients the pooled contenders have. */
  pgbenchClients: num('PGBENCH_CLIENTS', num('BENCH_POOL_SIZE', 10)),
  /**
   * The route's work: `one-query`, or `two-queries-5ms`, a query, then 5 ms
   * away from the database (a timer standing for an HTTP call), then a second
   * query, which shows how long each contender keeps its client meanwhile.
   */
  handler: oneOf('BENCH_HANDLER', Object.keys(HANDLERS) as Handler[], 'one-query'),
  /** Subset of contenders (ids), and of adapters. */
  contenders: list('BENCH_CONTENDERS', []),
  adapters: list('BENCH_ADAPTERS', ['express', 'fastify']),
  /** Microbenchmark: rounds, seconds per variant, concurrent loops. */
  microRounds: num('MICRO_ROUNDS', 3),
  microSeconds: num('MICRO_SECONDS', 3),
  microConcurrency: num('MICRO_CONCURRENCY', 10),
  /** Soak: stop after this many requests or this many seconds, whichever comes first. */
  soakRequests: num('SOAK_REQUESTS', 1_000_000),
  soakSeconds: num('SOAK_SECONDS', 60),
  /** Instruction counts (callgrind): rounds, requests before counting, and requests counted, per contender. */
  instructionsRounds: num('INSTRUCTIONS_ROUNDS', 3),
  instructionsWarmup: num('INSTRUCTIONS_WARMUP', 20_000),
  instructionsRequests: num('INSTRUCTIONS_REQUESTS', 2_000),
  /**
   * Connections of the counted requests (the warm-up uses `connections`). 1
   * counts each request served alone: no event-loop turn serves several, so
   * the count does not depend on how the load happened to bunch up.
   */
  instructionsConnections: num('INSTRUCTIONS_CONNECTIONS', num('BENCH_CONNECTIONS', 50)),
  /** `production`: run against a throwaway server with scram-sha-256 and TLS (see run.ts) instead of the PG* one. */
  server: process.env.BENCH_SERVER ?? '',
  /** The Node binary the servers and microbenchmark workers run on (e.g. one of `.ci/node-line.sh 24`); default this one. */
  node: process.env.BENCH_NODE || process.execPath,
  /** Where results go (latest.json and chart.svg). */
  resultsDir: process.env.BENCH_RESULTS_DIR ?? 'bench/results',
  /** Set to a folder to write there a V8 CPU profile of every server's measured window. */
  cpuProfDir: process.env.BENCH_CPU_PROF_DIR ?? '',
};

export const BENCH_DATABASE = process.env.BENCH_DATABASE ?? 'npp_bench';

/** Connection settings of the bench database: PG* variables, else 127.0.0.1:5432 as postgres. */
export function dbConfig(database = BENCH_DATABASE): pg.ClientConfig & { host: string; port: number; user: string; database: string } {
  const host = process.env.PGHOST ?? '127.0.0.1';
  if (!/^(127\.|localhost$|::1$|\/)/.test(host)) throw new Error(`the bench only loads 127.0.0.1, not ${host}`);
  return {
    host,
    port: Number(process.env.PGPORT ?? 5432),
    user: process.env.PGUSER ?? 'postgres',
    ...(process.env.PGPASSWORD ? { password: process.env.PGPASSWORD } : {}),
    database,
  };
}

export function databaseUrl(database = BENCH_DATABASE): string {
  const c = dbConfig(database);
  const auth = c.password ? `${encodeURIComponent(c.user)}:${encodeURIComponent(String(c.password))}` : encodeURIComponent(c.user);
  return `postgres://${auth}@${c.host}:${c.port}/${database}`;
}

/** Creates the bench database if it is missing. */
export async function ensureDatabase(): Promise<void> {
  const admin = new pg.Client(dbConfig(process.env.PGDATABASE ?? 'postgres'));
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [BENCH_DATABASE]);
    if (!rowCount) await admin.query(`CREATE DATABASE ${BENCH_DATABASE}`);
  } finally {
    await admin.end();
  }
}

export const SQL = 'SELECT 1 AS one';
