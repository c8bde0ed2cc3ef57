import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CompareRow } from './compare.js';
import { median } from './stats.js';
import type { BenchResults } from './report.js';

/**
 * The README's performance line and the performance page's chart, from one
 * set of runs (`npm run bench:headline`): Node 24 and 26, a fixed 2,500 req/s
 * and saturated, each on Express and Fastify, the module's CPU per request
 * and p99 against the singleton `pg.Pool` provider's. Also read by
 * test/docs-figures.spec.ts, which fails when a page's figure disagrees.
 */
export const HEADLINE_DIR = 'bench/results/headline';
export const HEADLINE_RUNS = ['24-rate-2500', '24-saturated', '26-rate-2500', '26-saturated'] as const;

export interface HeadlineRow {
  run: (typeof HEADLINE_RUNS)[number];
  node: string;
  load: 'rate' | 'saturated';
  adapter: string;
  /** Server CPU per request, µs, medians over rounds. */
  moduleCpu: number;
  singletonCpu: number;
  perQueryCpu: number | undefined;
  /** Median over rounds of the per-round ratio to the singleton. */
  cpuRatio: number;
  p99: number;
  singletonP99: number;
  /** Median over rounds of the per-round p99 ratio to the singleton: each round's pair ran back to back. */
  p99Ratio: number;
  /** Saturated runs: req/s × the singleton's. */
  reqRatio: number | undefined;
}

export interface Headline {
  rows: HeadlineRow[];
  machine: string;
  date: string;
  /** Interleaved rounds each median is taken over (the fewest of the runs'). */
  rounds: number;
}

export function readHeadline(root = '.'): Headline {
  const rows: HeadlineRow[] = [];
  let machine = '';
  let date = '';
  let rounds = Infinity;
  for (const run of HEADLINE_RUNS) {
    const results = JSON.parse(readFileSync(join(root, HEADLINE_DIR, run, 'latest.json'), 'utf8')) as BenchResults;
    const m = results.machine as { cpus: number; cpuModel: string; node: string; postgres: string };
    machine = `${m.cpus} vCPU ${m.cpuModel}, PostgreSQL ${m.postgres.split(' ')[0]}`;
    date = results.startedAt.slice(0, 10);
    const compare = results.compare!;
    rounds = Math.min(rounds, compare.settings.rounds as number);
    const load = run.endsWith('saturated') ? 'saturated' : 'rate';
    for (const adapter of ['express', 'fastify']) {
      const find = (id: string): CompareRow | undefined => compare.rows.find((row) => row.id === id && row.adapter === adapter);
      const module = find('pg-pool-module')!;
      const singleton = find('singleton-pool')!;
      rows.push({
        run,
        node: m.node,
        load,
        adapter,
        moduleCpu: module.median.cpuUsPerReq!,
        singletonCpu: singleton.median.cpuUsPerReq!,
        perQueryCpu: find('pg-pool-module-per-query')?.median.cpuUsPerReq ?? undefined,
        cpuRatio: module.median.cpuRatio!,
        p99: module.median.p99,
        singletonP99: singleton.median.p99,
        p99Ratio: median(module.samples.map((sample) => sample.p99 / singleton.samples.find((other) => other.round === sample.round)!.p99)),
        reqRatio: load === 'saturated' ? (module.median.ratio ?? undefined) : undefined,
      });
    }
  }
  return { rows, machine, date, rounds };
}

/** `lo–hi` of `values`, to two decimals. */
export function range(values: number[]): string {
  const lo = Math.min(...values).toFixed(2);
  const hi = Math.max(...values).toFixed(2);
  return lo === hi ? lo : `${lo}–${hi}`;
}

/** The README's sentence, as the test expects it. */
export function headlineSentence(headline: Headline): string {
  const of = (load: 'rate' | 'saturated') => headline.rows.filter((row) => row.load === load);
  const p99 = of('rate').map((row) => row.p99Ratio);
  return (
    `costs ${range(of('rate').map((row) => row.cpuRatio))}× the server CPU per request of a singleton \`pg.Pool\` provider at a fixed 2,500 req/s ` +
    `and ${range(of('saturated').map((row) => row.cpuRatio))}× saturated (${range(of('saturated').map((row) => row.reqRatio!))}× its req/s); ` +
    `its p99 at the fixed rate is ${range(p99)}× the singleton's`
  );
}

function table(headline: Headline): string {
  const lines = [
    '| Node | load | adapter | CPU µs/req (1) | (2) | (1) × (2) | `clientHold: \'query\'` µs/req | p99 ms (1) | (2) | p99 (1) × (2) | req/s (1) × (2) |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of headline.rows) {
    lines.push(
      `| ${row.node} | ${row.load === 'rate' ? '2,500 req/s' : 'saturated'} | ${row.adapter} | ${row.moduleCpu.toFixed(0)} | ${row.singletonCpu.toFixed(0)} | ${row.cpuRatio.toFixed(2)}× | ${row.perQueryCpu?.toFixed(0) ?? '—'} | ${row.p99} | ${row.singletonP99} | ${row.p99Ratio.toFixed(2)}× | ${row.reqRatio === undefined ? '—' : `${row.reqRatio.toFixed(2)}×`} |`,
    );
  }
  return lines.join('\n');
}

/** Two bars per run and adapter (CPU per request of (1) and (2)), p99 beside them. */
function chart(headline: Headline): string {
  const rowH = 22;
  const labelW = 230;
  const barW = 420;
  const top = 60;
  const scale = Math.max(...headline.rows.flatMap((row) => [row.moduleCpu, row.singletonCpu])) * 1.1;
  const body: string[] = [];
  let y = top;
  for (const row of headline.rows) {
    const name = `Node ${row.node.split('.')[0]} · ${row.load === 'rate' ? '2,500 req/s' : 'saturated'} · ${row.adapter === 'express' ? 'Express' : 'Fastify'}`;
    body.push(`<text x="12" y="${y + rowH}" class="label">${name}</text>`);
    for (const [value, color, p99, who] of [
      [row.moduleCpu, '#2f7d32', row.p99, '(1)'],
      [row.singletonCpu, '#1565c0', row.singletonP99, '(2)'],
    ] as const) {
      const width = (value / scale) * barW;
      body.push(`<rect x="${labelW}" y="${y + 3}" width="${width.toFixed(1)}" height="${rowH - 6}" fill="${color}"/>`);
      body.push(`<text x="${(labelW + width + 6).toFixed(1)}" y="${y + rowH / 2 + 4}" class="value">${who} ${value.toFixed(0)} µs CPU/req · p99 ${p99} ms</text>`);
      y += rowH;
    }
    y += 10;
  }
  const height = y + 30;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="940" height="${height}" viewBox="0 0 940 ${height}" font-family="Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 16px; font-weight: bold; fill: #212121; }
  .sub { font-size: 12px; fill: #616161; }
  .label { font-size: 12px; fill: #424242; }
  .value { font-size: 11px; fill: #424242; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="12" y="24" class="title">Server CPU per request and p99: (1) @InjectConnection(), (2) a singleton pg.Pool provider</text>
<text x="12" y="42" class="sub">GET / → SELECT 1, 50 connections, pool of 10, medians of ${headline.rounds} interleaved rounds · ${headline.machine} · ${headline.date}</text>
${body.join('\n')}
</svg>
`;
}

function main(): void {
  const headline = readHeadline();
  writeFileSync(join(HEADLINE_DIR, 'headline.md'), `${table(headline)}\n\nThe module ${headlineSentence(headline)}.\n`);
  writeFileSync(join(HEADLINE_DIR, 'chart.svg'), chart(headline));
  console.log(table(headline));
  console.log(`\nThe module ${headlineSentence(headline)}.`);
}

if (process.argv[1]?.endsWith('headline.js')) main();
