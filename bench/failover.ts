import 'reflect-metadata';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { failOver, startPair, stopPair, type Demotion, type FailoverResult, type Pair } from '../test/support/failover.js';
import { TransferLoad } from '../test/support/transfer-load.js';
import { max, median, min } from './stats.js';

// Failovers under bank-transfer load (the harness of test/failover.spec.ts),
// repeated: FAILOVER_SWITCHOVERS clean switchovers on one pair of clusters,
// alternating direction (the old primary rejoins as a standby of the new one
// each time), then crashes (`stop -m immediate`) on new pairs,
// FAILOVER_CRASHES with asynchronous and as many with synchronous replication.
// Writes JSON and markdown to FAILOVER_RESULTS_DIR.

const SWITCHOVERS = Number(process.env.FAILOVER_SWITCHOVERS ?? 10);
const CRASHES = Number(process.env.FAILOVER_CRASHES ?? 3);
const CLIENTS = Number(process.env.FAILOVER_CLIENTS ?? 16);
const RESULTS_DIR = process.env.FAILOVER_RESULTS_DIR ?? 'bench/results/failover';
/** The target: writes back within 1 s of the new primary taking them. */
const TARGET_MS = 1000;

interface Distribution {
  min: number;
  median: number;
  p90: number;
  max: number;
}

type Timed = 'firstAcknowledgedMs' | 'firstCommitMs' | 'promotionMs';

/** FailoverResult's figures over several runs: its times as distributions, its counts summed. */
type Summary = Record<Timed, Distribution> &
  Pick<FailoverResult, 'duringSwitch' | 'overall' | 'acknowledged' | 'lost' | 'committedUnacknowledged'> & {
    runs: number;
    /** Runs whose writes were not back within TARGET_MS, or never. */
    overTarget: number;
  };

function p90(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(0.9 * sorted.length) - 1)];
}

function distribution(values: Array<number | undefined>): Distribution {
  const known = values.filter((value): value is number => value !== undefined);
  return { min: min(known), median: median(known), p90: p90(known), max: max(known) };
}

function sum(records: Array<Record<string, number>>): Record<string, number> {
  const total: Record<string, number> = {};
  for (const record of records) for (const [status, count] of Object.entries(record)) total[status] = (total[status] ?? 0) + count;
  return total;
}

function summarise(runs: FailoverResult[]): Summary {
  return {
    runs: runs.length,
    firstAcknowledgedMs: distribution(runs.map((run) => run.firstAcknowledgedMs)),
    firstCommitMs: distribution(runs.map((run) => run.firstCommitMs)),
    promotionMs: distribution(runs.map((run) => run.promotionMs)),
    duringSwitch: sum(runs.map((run) => run.duringSwitch)),
    overall: sum(runs.map((run) => run.overall)),
    acknowledged: runs.reduce((total, run) => total + run.acknowledged, 0),
    lost: runs.reduce((total, run) => total + run.lost, 0),
    committedUnacknowledged: sum(runs.map((run) => run.committedUnacknowledged)),
    overTarget: runs.filter((run) => run.firstAcknowledgedMs === undefined || run.firstAcknowledgedMs > TARGET_MS).length,
  };
}

function log(run: number, result: FailoverResult): void {
  console.log(
    `${run}. ${result.demotion}${result.synchronous ? ' (synchronous)' : ''}: first 200 ${result.firstAcknowledgedMs} ms, ` +
      `first commit ${result.firstCommitMs} ms after the new primary took writes (promotion ${result.promotionMs} ms); ` +
      `during the switch ${JSON.stringify(result.duringSwitch)}; lost ${result.lost} of ${result.acknowledged}`,
  );
}

/** Clean switchovers on one pair, back and forth: the old primary rejoins as the new one's standby before the next. */
async function switchovers(count: number): Promise<FailoverResult[]> {
  const pair = await startPair(false);
  const results: FailoverResult[] = [];
  try {
    let [primary, standby] = [pair.primary, pair.standby];
    for (let run = 1; run <= count; run++) {
      const result = await failOver(TransferLoad.start(pair.url, CLIENTS), primary, standby, 'stop -m fast', { synchronous: false });
      log(run, result);
      results.push(result);
      await primary.restartAsStandbyOf(standby);
      await primary.catchUpWith(standby);
      [primary, standby] = [standby, primary];
    }
  } finally {
    await stopPair(pair);
  }
  return results;
}

/** Crashes of the primary, each on a new pair (a crashed primary may hold WAL its standby never got, so it cannot simply rejoin). */
async function crashes(count: number, synchronous: boolean): Promise<FailoverResult[]> {
  const results: FailoverResult[] = [];
  for (let run = 1; run <= count; run++) {
    let pair: Pair | undefined;
    try {
      pair = await startPair(synchronous);
      const demotion: Demotion = 'stop -m immediate';
      const result = await failOver(TransferLoad.start(pair.url, CLIENTS), pair.primary, pair.standby, demotion, { synchronous });
      log(run, result);
      results.push(result);
    } finally {
      await stopPair(pair);
    }
  }
  return results;
}

function row(label: string, summary: Summary): string {
  const d = (x: Distribution): string => `${x.min} / ${x.median} / ${x.p90} / ${x.max}`;
  const counts = (record: Record<string, number>): string =>
    Object.entries(record)
      .map(([status, n]) => `${status}: ${n}`)
      .join(', ') || 'none';
  return `| ${label} | ${summary.runs} | ${d(summary.firstAcknowledgedMs)} | ${d(summary.firstCommitMs)} | ${d(summary.promotionMs)} | ${counts(summary.duringSwitch)} | ${summary.lost} of ${summary.acknowledged} | ${counts(summary.committedUnacknowledged)} | ${summary.overTarget} |`;
}

function markdown(results: Record<string, Summary>, runs: Record<string, FailoverResult[]>): string {
  const lines = [
    '# Failover under transfer load',
    '',
    `Made by \`npm run bench:failover\` on ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${CLIENTS} HTTP clients doing bank transfers ` +
      'against one application that lists a primary and its streaming standby (`target_session_attrs=read-write`), PostgreSQL clusters of the machine\'s binaries.',
    '',
    'Times in ms as min / median / p90 / max. *First 200*: from the new primary taking its first write (a probe polls it) to the first HTTP answer 200 for a transfer committed there; ' +
      '*first commit*: to the first such transfer\'s commit, by the server\'s clock; *promotion*: from taking the old primary away to the new one taking writes (the harness\' part, not the application\'s). *Not 200 yet committed*: answers other than 200 whose transfer the new primary has (the connection died as it committed).',
    '',
    '| runs | n | first 200 | first commit | promotion | answers during the switch | acknowledged lost | not 200 yet committed | over 1 s |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...Object.entries(results).map(([label, summary]) => row(label, summary)),
    '',
  ];
  const each = Object.entries(runs).flatMap(([label, list]) =>
    list.map(
      (r, i) =>
        `| ${label} | ${i + 1} | ${r.firstAcknowledgedMs ?? 'never'} | ${r.firstCommitMs ?? 'never'} | ${r.promotionMs} | ${JSON.stringify(r.duringSwitch)} | ${JSON.stringify(r.overall)} | ${r.lost} of ${r.acknowledged} |`,
    ),
  );
  if (each.length > 0) {
    lines.push('## Each run', '', '| runs | # | first 200 | first commit | promotion | answers during the switch | answers overall | lost |', '| --- | --- | --- | --- | --- | --- | --- | --- |', ...each, '');
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const runs: Record<string, FailoverResult[]> = {
    'stop -m fast (switchover)': await switchovers(SWITCHOVERS),
    'stop -m immediate, asynchronous': await crashes(CRASHES, false),
    'stop -m immediate, synchronous': await crashes(CRASHES, true),
  };
  const results = Object.fromEntries(Object.entries(runs).map(([label, list]) => [label, summarise(list)]));
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'latest.json'), JSON.stringify({ settings: { clients: CLIENTS, node: process.version }, results, runs }, null, 2) + '\n');
  writeFileSync(join(RESULTS_DIR, 'latest.md'), markdown(results, runs));
  console.log(markdown(results, {}));
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
