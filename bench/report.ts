import type { CompareResult, CompareRow } from './compare.js';
import { HANDLERS, type Handler } from './config.js';
import type { InstructionsResult } from './instructions.js';
import type { MicroResult } from './micro.js';
import { mb, type SoakResult } from './soak.js';
import { max, median, min } from './stats.js';

export interface Target {
  adapter: string;
  target: string;
  value: number | null;
  threshold: number;
  met: boolean | null;
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  machine: Record<string, unknown>;
  compare?: CompareResult;
  micro?: MicroResult;
  soak?: SoakResult;
  instructions?: InstructionsResult;
  targets: Target[];
}

const SUBJECT = 'pg-pool-module';

/** Median over rounds of `SUBJECT`'s req/s over `other`'s, pair by pair within each round. */
function pairRatio(compare: CompareResult, adapter: string, other: string): number | null {
  const subject = compare.rows.find((r) => r.id === SUBJECT && r.adapter === adapter);
  const peer = compare.rows.find((r) => r.id === other && r.adapter === adapter);
  if (!subject || !peer) return null;
  const ratios = subject.samples.flatMap((s) => {
    const p = peer.samples.find((x) => x.round === s.round);
    return p ? [s.reqPerSec / p.reqPerSec] : [];
  });
  return ratios.length ? median(ratios) : null;
}

export function evaluateTargets(compare: CompareResult | undefined, soak: SoakResult | undefined): Target[] {
  const targets: Target[] = [];
  const check = (adapter: string, target: string, value: number | null, threshold: number, below = false): void => {
    targets.push({ adapter, target, value, threshold, met: value === null ? null : below ? value < threshold : value >= threshold });
  };
  if (compare) {
    for (const adapter of [...new Set(compare.rows.map((r) => r.adapter))].filter((a) => a !== 'node:http')) {
      check(adapter, '(1) / (2) singleton pg.Pool', pairRatio(compare, adapter, 'singleton-pool'), 0.95);
      check(adapter, '(1) / (3) REQUEST scope', pairRatio(compare, adapter, 'request-scope'), 1.4);
      check(adapter, '(1) / (4) @nestjs/typeorm', pairRatio(compare, adapter, 'typeorm'), 1);
      check(adapter, '(1) / (5) nestjs-cls', pairRatio(compare, adapter, 'nestjs-cls'), 1);
      check(adapter, '(1) / (6) connect per request', pairRatio(compare, adapter, 'connect-per-request'), 50);
    }
  }
  if (soak) {
    check('express', 'soak heap growth', soak.heapGrowth, 0.1, true);
    check('express', 'soak clients checked out at end', soak.end.checkedOut ?? NaN, 1, true);
  }
  return targets;
}

const fmt = (n: number, digits = 0): string =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a';
const ratio = (n: number | null): string => (n === null || !Number.isFinite(n) ? '—' : `${n.toFixed(2)}×`);

const ORDER = ['pg-pool-module', 'pg-pool-module-per-query', 'singleton-pool', 'request-scope', 'typeorm', 'nestjs-cls', 'connect-per-request', 'raw'];
const NUMBER: Record<string, string> = {
  'pg-pool-module': '(1)',
  'singleton-pool': '(2)',
  'request-scope': '(3)',
  typeorm: '(4)',
  'nestjs-cls': '(5)',
  'connect-per-request': '(6)',
  raw: '',
};

/** Adapters in name order, node:http last; contenders in the issue's order within each. */
function byAdapterThenOrder(a: { id: string; adapter: string }, b: { id: string; adapter: string }): number {
  if (a.adapter === b.adapter) return ORDER.indexOf(a.id) - ORDER.indexOf(b.id);
  return a.adapter === 'node:http' ? 1 : b.adapter === 'node:http' ? -1 : a.adapter.localeCompare(b.adapter);
}

/** "(n) label", in bold for the package itself. */
function contenderName(row: { id: string; label: string }): string {
  const name = `${NUMBER[row.id] ?? ''} ${row.label}`.trim();
  return row.id === SUBJECT ? `**${name}**` : name;
}

export function compareTable(compare: CompareResult): string {
  const lines = [
    '| adapter | contender | req/s (median) | min–max req/s | p50 ms | p99 ms | server CPU µs/req | req/s × (2) | CPU/req × (2) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of [...compare.rows].sort(byAdapterThenOrder)) {
    lines.push(
      `| ${row.adapter} | ${contenderName(row)} | ${fmt(row.median.reqPerSec)} | ${fmt(row.min)}–${fmt(row.max)} | ` +
        `${fmt(row.median.p50)} | ${fmt(row.median.p99)} | ${fmt(row.median.cpuUsPerReq)} | ${ratio(row.median.ratio)} | ${ratio(row.median.cpuRatio)} |`,
    );
  }
  if ('medianTps' in compare.pgbench) {
    const p = compare.pgbench;
    lines.push(`| server only | \`pgbench -S -c ${p.clients}\` | ${fmt(p.medianTps)} tps | ${fmt(p.min)}–${fmt(p.max)} | | | | | |`);
  }
  return lines.join('\n');
}

const msOrNa = (n: number | null): string => (n === null ? 'n/a' : fmt(n, 2));

/** How long each contender's pool lent its clients out, against how long their queries took. */
export function clientTimesTable(compare: CompareResult): string {
  const lines = [
    "Clients lent out by the pool (its 'acquire' to 'release' events) against queries (sent to the server's ReadyForQuery), " +
      'in ms, medians over rounds; per request: summed over the window, divided by the answered requests.',
    '',
    '| adapter | contender | held p50 | held p99 | query p50 | query p99 | held per request | querying per request |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of [...compare.rows].sort(byAdapterThenOrder)) {
    const t = row.clientTimes;
    lines.push(
      `| ${row.adapter} | ${contenderName(row)} | ${msOrNa(t.holdP50)} | ${msOrNa(t.holdP99)} | ${msOrNa(t.queryP50)} | ${msOrNa(t.queryP99)} | ` +
        `${msOrNa(t.heldMsPerReq)} | ${msOrNa(t.queryMsPerReq)} |`,
    );
  }
  return lines.join('\n');
}

/** The handler shape in a part's settings; results from before BENCH_HANDLER ran one-query. */
function handlerIn(settings: Record<string, unknown> | undefined): Handler {
  const handler = settings?.handler;
  return typeof handler === 'string' && handler in HANDLERS ? (handler as Handler) : 'one-query';
}

export function microTable(micro: MicroResult): string {
  const lines = ['| variant | ops/s (median) | min–max | CPU µs/op | × pg.Pool |', '| --- | ---: | ---: | ---: | ---: |'];
  for (const row of micro.rows) {
    lines.push(`| \`${row.description}\` | ${fmt(row.medianOpsPerSec)} | ${fmt(row.min)}–${fmt(row.max)} | ${fmt(row.medianCpuUsPerOp, 1)} | ${ratio(row.ratioToPool)} |`);
  }
  return lines.join('\n');
}

export function soakTable(soak: SoakResult): string {
  return [
    '| requests | duration | req/s | p50 / p99 ms | heap start → end | RSS start → end | checked out at end | errors |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    `| ${fmt(soak.requests)} | ${fmt(soak.durationS)} s | ${fmt(soak.reqPerSec)} | ${soak.p50} / ${soak.p99} | ` +
      `${mb(soak.start.heapUsed)} → ${mb(soak.end.heapUsed)} (${(soak.heapGrowth * 100).toFixed(1)} %) | ` +
      `${mb(soak.start.rss)} → ${mb(soak.end.rss)} (${(soak.rssGrowth * 100).toFixed(1)} %) | ${soak.end.checkedOut} | ` +
      `${soak.non2xx + soak.errors + soak.timeouts} |`,
  ].join('\n');
}

export function targetsTable(targets: Target[]): string {
  const lines = ['| adapter | target | measured | needed | met |', '| --- | --- | ---: | ---: | :---: |'];
  for (const t of targets) {
    const pct = t.target.startsWith('soak heap');
    const value = t.value === null ? 'n/a' : pct ? `${(t.value * 100).toFixed(1)} %` : t.target.includes('checked out') ? String(t.value) : `${t.value.toFixed(3)}×`;
    const needed = pct ? `< ${t.threshold * 100} %` : t.target.includes('checked out') ? '0' : `≥ ${t.threshold}×`;
    lines.push(`| ${t.adapter} | ${t.target} | ${value} | ${needed} | ${t.met === null ? '?' : t.met ? 'yes' : 'no'} |`);
  }
  return lines.join('\n');
}

export function instructionsTable(instructions: InstructionsResult): string {
  if ('skipped' in instructions) return instructions.skipped;
  const lines = [
    '| adapter | contender | main thread outside GC: instructions/req (median) | min–max | × (2) | all threads: instructions/req (median) | min–max | × (2) |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const row of [...instructions.rows].sort(byAdapterThenOrder)) {
    // Results from before the GC was told apart show n/a there.
    const outsideGc = row.outsideGcSamples?.length
      ? `${fmt(row.outsideGcPerRequest!)} | ${fmt(min(row.outsideGcSamples))}–${fmt(max(row.outsideGcSamples))} | ${ratio(row.outsideGcRatio ?? null)}`
      : 'n/a | n/a | n/a';
    lines.push(
      `| ${row.adapter} | ${contenderName(row)} | ${outsideGc} | ${fmt(row.instructionsPerRequest)} | ${fmt(min(row.samples))}–${fmt(max(row.samples))} | ${ratio(row.ratio)} |`,
    );
  }
  return lines.join('\n');
}

export function markdown(results: BenchResults): string {
  const parts: string[] = [];
  const instructionsSettings = results.instructions && 'settings' in results.instructions ? results.instructions.settings : undefined;
  if (results.compare || instructionsSettings) {
    const handler = handlerIn(results.compare?.settings ?? instructionsSettings);
    parts.push(`Handler \`${handler}\` (\`BENCH_HANDLER\`): every contender's \`GET /\` runs ${HANDLERS[handler]}.`);
  }
  if (results.compare) parts.push(compareTable(results.compare));
  // Results from before the client times have none to show.
  if (results.compare?.rows.some((row) => row.clientTimes)) parts.push(clientTimesTable(results.compare));
  if (results.micro) parts.push(microTable(results.micro));
  if (results.soak) parts.push(soakTable(results.soak));
  if (results.instructions) parts.push(instructionsTable(results.instructions));
  if (results.targets.length) parts.push(targetsTable(results.targets));
  return parts.join('\n\n');
}

// ---- chart ----

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A horizontal bar chart of median req/s with min–max whiskers, one panel per adapter. */
export function chartSvg(compare: CompareResult, subtitle: string): string {
  const adapters = [...new Set(compare.rows.map((r) => r.adapter))].filter((a) => a !== 'node:http');
  const raw = compare.rows.find((r) => r.id === 'raw');
  const panels = adapters.map((adapter) => {
    const rows = compare.rows.filter((r) => r.adapter === adapter).sort((a, b) => ORDER.indexOf(a.id) - ORDER.indexOf(b.id));
    return { adapter, rows: raw ? [...rows, raw] : rows };
  });
  const scaleMax = Math.max(...compare.rows.map((r) => r.max)) * 1.05;
  const width = 1060;
  const labelW = 300;
  const barW = 440;
  const rowH = 26;
  const top = 64;
  const panelGap = 40;
  let y = top;
  const body: string[] = [];
  const x = (v: number): number => labelW + (v / scaleMax) * barW;
  for (const panel of panels) {
    body.push(`<text x="16" y="${y + 4}" class="panel">${esc(panel.adapter === 'express' ? 'Express' : panel.adapter === 'fastify' ? 'Fastify' : panel.adapter)}</text>`);
    y += 14;
    for (const row of panel.rows) {
      const isSubject = row.id === SUBJECT;
      const color = isSubject ? '#2f7d32' : row.id === 'raw' ? '#9e9e9e' : row.id === 'singleton-pool' ? '#1565c0' : '#90a4ae';
      const name = `${NUMBER[row.id] ?? ''} ${row.label}`.trim();
      body.push(`<text x="${labelW - 8}" y="${y + rowH / 2 + 4}" text-anchor="end" class="${isSubject ? 'label strong' : 'label'}">${esc(name)}</text>`);
      body.push(`<rect x="${labelW}" y="${y + 4}" width="${Math.max(1, x(row.median.reqPerSec) - labelW).toFixed(1)}" height="${rowH - 8}" fill="${color}"/>`);
      const whiskerY = y + rowH / 2;
      body.push(`<line x1="${x(row.min).toFixed(1)}" x2="${x(row.max).toFixed(1)}" y1="${whiskerY}" y2="${whiskerY}" class="whisker"/>`);
      body.push(`<line x1="${x(row.min).toFixed(1)}" x2="${x(row.min).toFixed(1)}" y1="${whiskerY - 5}" y2="${whiskerY + 5}" class="whisker"/>`);
      body.push(`<line x1="${x(row.max).toFixed(1)}" x2="${x(row.max).toFixed(1)}" y1="${whiskerY - 5}" y2="${whiskerY + 5}" class="whisker"/>`);
      const text = `${fmt(row.median.reqPerSec)} req/s` + (row.median.ratio !== null ? `  ·  ${row.median.ratio.toFixed(2)}× (2)` : '') + `  ·  ${fmt(row.median.cpuUsPerReq)} µs CPU/req`;
      body.push(`<text x="${Math.max(x(row.max), x(row.median.reqPerSec)) + 8}" y="${y + rowH / 2 + 4}" class="${isSubject ? 'value strong' : 'value'}">${esc(text)}</text>`);
      y += rowH;
    }
    y += panelGap;
  }
  // Axis
  const axisY = y - panelGap + 8;
  const ticks: string[] = [];
  const step = niceStep(scaleMax / 5);
  for (let v = 0; v <= scaleMax; v += step) {
    ticks.push(`<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${top}" y2="${axisY}" class="grid"/>`);
    ticks.push(`<text x="${x(v).toFixed(1)}" y="${axisY + 16}" text-anchor="middle" class="tick">${fmt(v)}</text>`);
  }
  const pg = 'medianTps' in compare.pgbench ? `pgbench -S -c ${compare.pgbench.clients}: ${fmt(compare.pgbench.medianTps)} tps (the server alone)` : '';
  const height = axisY + 56;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">
<style>
  .title { font-size: 17px; font-weight: bold; fill: #212121; }
  .sub { font-size: 12px; fill: #616161; }
  .panel { font-size: 14px; font-weight: bold; fill: #212121; }
  .label { font-size: 12px; fill: #424242; }
  .value { font-size: 11px; fill: #424242; }
  .strong { font-weight: bold; fill: #1b5e20; }
  .tick { font-size: 10px; fill: #757575; }
  .grid { stroke: #eeeeee; stroke-width: 1; }
  .whisker { stroke: #212121; stroke-width: 1.2; }
</style>
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="16" y="24" class="title">GET / with ${esc(HANDLERS[handlerIn(compare.settings)])} per request: median req/s over interleaved rounds (whiskers: min–max)</text>
<text x="16" y="42" class="sub">${esc(subtitle)}</text>
${ticks.join('\n')}
${body.join('\n')}
<text x="${labelW}" y="${axisY + 34}" class="sub">requests per second · ratio to (2) pair by pair within a round · server CPU time per request${pg ? ` · ${esc(pg)}` : ''}</text>
</svg>
`;
}

function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(raw));
  const n = raw / power;
  return (n < 1.5 ? 1 : n < 3.5 ? 2 : n < 7.5 ? 5 : 10) * power;
}

export function subtitleOf(results: BenchResults): string {
  const m = results.machine;
  const s = results.compare?.settings ?? {};
  const server = m.server === 'scram-sha-256 + TLS' ? ' (scram-sha-256 + TLS)' : '';
  return `${m.cpus} × ${m.cpuModel}, Node ${m.node}, PostgreSQL ${m.postgres}${server} on 127.0.0.1 · ${s.rounds} rounds × ${s.durationS} s (+${s.warmupS} s warm-up), ${s.connections} connections, pool size ${s.poolSize} · ${results.finishedAt.slice(0, 10)}`;
}

export type { CompareRow };
