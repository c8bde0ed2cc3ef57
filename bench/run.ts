import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { PgCluster } from '../test/support/pg-cluster.js';
import { config, dbConfig, ensureDatabase } from './config.js';
import { runCompare } from './compare.js';
import { runInstructions } from './instructions.js';
import { runMicro } from './micro.js';
import { chartSvg, evaluateTargets, markdown, subtitleOf, type BenchResults } from './report.js';
import { runSoak } from './soak.js';

/**
 * `npm run bench`: the HTTP comparison (interleaved rounds, Express and
 * Fastify), the microbenchmark and the soak, each selectable with
 * BENCH_PARTS, which also asks for the instruction counts (slow: callgrind). Writes bench/results/latest.json, latest.md and chart.svg.
 */
async function postgresVersion(): Promise<string> {
  const client = new pg.Client(dbConfig());
  await client.connect();
  try {
    return (await client.query<{ server_version: string }>('SHOW server_version')).rows[0].server_version;
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const log = (line: string): void => console.log(line);
  // BENCH_SERVER=production: a throwaway server configured like production ones (scram-sha-256, TLS),
  // where a new connection costs what it costs there; every process of the bench connects to it.
  const production = config.server === 'production' ? await PgCluster.create({ production: true }) : undefined;
  if (production) {
    const { host, port, user, password } = production.options();
    Object.assign(process.env, { PGHOST: host, PGPORT: String(port), PGUSER: user, PGPASSWORD: password, PGSSLMODE: 'no-verify' });
    log(`bench: a throwaway server with scram-sha-256 and TLS on ${host}:${port}`);
  }
  try {
    await bench(log);
  } finally {
    await production?.destroy();
  }
}

async function bench(log: (line: string) => void): Promise<void> {
  await ensureDatabase();
  const startedAt = new Date().toISOString();
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    // The servers' Node (BENCH_NODE), which may not be the one running this.
    node: execFileSync(config.node, ['--version']).toString().trim().replace(/^v/, ''),
    postgres: await postgresVersion(),
    server: config.server === 'production' ? 'scram-sha-256 + TLS' : 'as configured (PG* variables)',
  };
  log(`bench: ${JSON.stringify({ parts: config.parts, rounds: config.rounds, duration: config.duration, warmup: config.warmup, connections: config.connections, rate: config.rate })}`);
  const results: BenchResults = { startedAt, finishedAt: '', machine, targets: [] };
  // Written after each part, so that a part that fails does not lose those before it.
  if (config.parts.includes('compare')) results.compare = await runCompare(log);
  save(results);
  if (config.parts.includes('micro')) results.micro = await runMicro(log);
  save(results);
  if (config.parts.includes('soak')) results.soak = await runSoak(log);
  save(results);
  if (config.parts.includes('instructions')) results.instructions = await runInstructions(log);
  save(results);
  const md = markdown(results);
  log('');
  log(md);
  log('');
  log(`written to ${config.resultsDir}/latest.json, latest.md${results.compare ? ' and chart.svg' : ''}`);
}

function save(results: BenchResults): void {
  results.finishedAt = new Date().toISOString();
  results.targets = evaluateTargets(results.compare, results.soak);
  mkdirSync(config.resultsDir, { recursive: true });
  writeFileSync(join(config.resultsDir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(config.resultsDir, 'latest.md'), `${markdown(results)}\n`);
  if (results.compare) writeFileSync(join(config.resultsDir, 'chart.svg'), chartSvg(results.compare, subtitleOf(results)));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
