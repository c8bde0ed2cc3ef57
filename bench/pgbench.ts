import pg from 'pg';
import { BENCH_DATABASE, config, dbConfig } from './config.js';
import { commandPath, runCommand } from './processes.js';

export const PGBENCH_MISSING =
  'pgbench not found on PATH: install it with `apt-get install postgresql-client` (Debian ships pgbench in ' +
  'postgresql-client-NN; postgresql-contrib on older releases). Skipping the pgbench row.';

export function pgbenchPath(): Promise<string | undefined> {
  return commandPath('pgbench');
}

function connectionArgs(): string[] {
  const c = dbConfig();
  return ['-h', c.host, '-p', String(c.port), '-U', c.user];
}

function env(): NodeJS.ProcessEnv {
  const c = dbConfig();
  // node-postgres' 'no-verify' (TLS, any certificate) is libpq's 'require'.
  const sslmode = process.env.PGSSLMODE === 'no-verify' ? { PGSSLMODE: 'require' } : {};
  return { ...process.env, ...sslmode, ...(c.password ? { PGPASSWORD: String(c.password) } : {}) };
}

/** Creates pgbench's tables (scale 1) in the bench database, once. */
export async function initPgbench(pgbench: string): Promise<void> {
  const client = new pg.Client(dbConfig());
  await client.connect();
  try {
    const { rows } = await client.query<{ exists: boolean }>("SELECT to_regclass('public.pgbench_accounts') IS NOT NULL AS exists");
    if (rows[0].exists) return;
  } finally {
    await client.end();
  }
  const { code, stderr } = await runCommand(pgbench, ['-i', '-s', '1', '-q', ...connectionArgs(), BENCH_DATABASE], 120_000, env());
  if (code !== 0) throw new Error(`pgbench -i failed: ${stderr}`);
}

export interface PgbenchResult {
  tps: number;
  latencyMs: number;
}

/** `pgbench -S` (select only) with the pooled contenders' client count, for `seconds`. */
export async function runPgbench(pgbench: string, seconds: number): Promise<PgbenchResult> {
  const clients = String(config.pgbenchClients);
  const args = ['-S', '-n', '-c', clients, '-j', '2', '-T', String(Math.max(1, Math.round(seconds))), ...connectionArgs(), BENCH_DATABASE];
  const { code, stdout, stderr } = await runCommand(pgbench, args, (seconds + 60) * 1000, env());
  if (code !== 0) throw new Error(`pgbench failed: ${stderr}`);
  const tps = /tps = ([\d.]+)/.exec(stdout);
  const latency = /latency average = ([\d.]+) ms/.exec(stdout);
  if (!tps) throw new Error(`cannot read pgbench output: ${stdout}`);
  return { tps: Number(tps[1]), latencyMs: latency ? Number(latency[1]) : NaN };
}
