import { config } from './config.js';
import { CONTENDERS, EXPERIMENTS } from './contenders/index.js';
import { initPgbench, PGBENCH_MISSING, pgbenchPath, runPgbench } from './pgbench.js';
import { LoadProcess, ServerProcess, type StartOptions } from './processes.js';
import type { Durations, LoadResult } from './protocol.js';
import { max, median, min } from './stats.js';

export const BASELINE = 'singleton-pool';

export interface RoundSample {
  round: number;
  reqPerSec: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Server CPU time (user + system) per 2xx response, in microseconds. */
  cpuUsPerReq: number;
  /**
   * The user-mode part of it: the server's JavaScript (and V8, GC), without
   * the kernel's socket work, whose cost swings most with the machine's load.
   */
  cpuUserUsPerReq: number;
  /** How long the server's pool lent out each client in this window (null: it has no pool), and how long each query took. */
  hold: Durations | null;
  query: Durations | null;
  /** req/s over the baseline's req/s on the same adapter, same round. */
  ratio: number | null;
  /** CPU per request over the baseline's, same adapter, same round (below 1 is cheaper). */
  cpuRatio: number | null;
}

export interface CompareRow {
  id: string;
  label: string;
  adapter: string;
  samples: RoundSample[];
  median: { reqPerSec: number; p50: number; p99: number; cpuUsPerReq: number; ratio: number | null; cpuRatio: number | null };
  min: number;
  max: number;
  clientTimes: ClientTimesSummary;
}

/** Client hold times against query times, in ms, medians over rounds; null where none were recorded. */
export interface ClientTimesSummary {
  holdP50: number | null;
  holdP99: number | null;
  queryP50: number | null;
  queryP99: number | null;
  /** Time clients were lent out, and queries ran, per answered request. */
  heldMsPerReq: number | null;
  queryMsPerReq: number | null;
}

export interface CompareResult {
  settings: Record<string, unknown>;
  rows: CompareRow[];
  pgbench: { clients: number; samples: Array<{ round: number; tps: number; latencyMs: number }>; medianTps: number; min: number; max: number } | { skipped: string };
}

export interface Slot {
  id: string;
  label: string;
  adapter: string;
  kind: string;
}

/** The contenders of this run on each adapter (BENCH_CONTENDERS, BENCH_ADAPTERS), then raw node:http. */
export function slots(): Slot[] {
  const chosen = config.contenders.length ? [...CONTENDERS, ...EXPERIMENTS].filter((c) => config.contenders.includes(c.id)) : CONTENDERS;
  const list: Slot[] = [];
  for (const adapter of config.adapters) {
    for (const c of chosen) list.push({ id: c.id, label: c.label, adapter, kind: c.id });
  }
  if (!config.contenders.length || config.contenders.includes('raw')) {
    list.push({ id: 'raw', label: 'raw node:http + pg.Pool', adapter: 'node:http', kind: 'raw' });
  }
  return list;
}

/** The server of `slot` (raw node:http takes no Nest adapter: its argument is unused). */
export function startServer(slot: Slot, options?: StartOptions): Promise<ServerProcess> {
  return ServerProcess.start(slot.kind, slot.adapter === 'node:http' ? 'express' : slot.adapter, options);
}

async function measure(load: LoadProcess, slot: Slot): Promise<Omit<RoundSample, 'round' | 'ratio' | 'cpuRatio'>> {
  const server = await startServer(slot, { clientTimes: true });
  try {
    const url = `http://127.0.0.1:${server.port}/`;
    const rate = config.rate || undefined;
    if (config.warmup > 0) await load.run({ url, connections: config.connections, duration: config.warmup, rate });
    await server.begin();
    const result: LoadResult = await load.run({ url, connections: config.connections, duration: config.duration, rate });
    const { cpuUs, cpuUserUs, hold, query } = await server.end();
    return {
      reqPerSec: result.reqPerSec,
      p50: result.p50,
      p99: result.p99,
      requests: result.requests,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      cpuUsPerReq: result.requests ? cpuUs / result.requests : NaN,
      cpuUserUsPerReq: result.requests ? cpuUserUs / result.requests : NaN,
      hold,
      query,
    };
  } finally {
    await server.stop();
  }
}

const ms = (n: number | null | undefined): string => (n == null ? 'n/a' : n.toFixed(2));

function medianOrNull(values: Array<number | null | undefined>): number | null {
  const known = values.filter((v): v is number => v != null);
  return known.length ? median(known) : null;
}

export async function runCompare(log: (line: string) => void): Promise<CompareResult> {
  const list = slots();
  const samples = new Map<string, RoundSample[]>();
  const key = (s: { id: string; adapter: string }): string => `${s.adapter}/${s.id}`;
  const pgbench = await pgbenchPath();
  if (pgbench) await initPgbench(pgbench);
  else log(PGBENCH_MISSING);
  const pgbenchSamples: Array<{ round: number; tps: number; latencyMs: number }> = [];
  const load = LoadProcess.start();
  try {
    for (let round = 1; round <= config.rounds; round++) {
      log(`round ${round}/${config.rounds}`);
      const thisRound = new Map<string, Omit<RoundSample, 'round' | 'ratio' | 'cpuRatio'>>();
      // Each round starts one contender further on: the first of a round runs right after the
      // previous round's pgbench (or the machine's idle), and no contender should always be that one.
      const shift = (round - 1) % list.length;
      for (const slot of [...list.slice(shift), ...list.slice(0, shift)]) {
        const sample = await measure(load, slot);
        thisRound.set(key(slot), sample);
        log(
          `  ${slot.adapter.padEnd(9)} ${slot.id.padEnd(24)} ${sample.reqPerSec.toFixed(0).padStart(7)} req/s  ` +
            `p50 ${sample.p50} ms  p99 ${sample.p99} ms  cpu ${sample.cpuUsPerReq.toFixed(0)} µs/req (user ${sample.cpuUserUsPerReq.toFixed(0)})  ` +
            `client held p50/p99 ${ms(sample.hold?.p50)}/${ms(sample.hold?.p99)} ms, query ${ms(sample.query?.p50)}/${ms(sample.query?.p99)} ms` +
            (sample.non2xx || sample.errors || sample.timeouts ? `  non2xx ${sample.non2xx} errors ${sample.errors} timeouts ${sample.timeouts}` : ''),
        );
      }
      if (pgbench) {
        const result = await runPgbench(pgbench, config.duration);
        pgbenchSamples.push({ round, ...result });
        log(`  pgbench -S -c ${config.pgbenchClients}: ${result.tps.toFixed(0)} tps, ${result.latencyMs} ms average`);
      }
      for (const slot of list) {
        const sample = thisRound.get(key(slot))!;
        const base = thisRound.get(key({ id: BASELINE, adapter: slot.adapter }));
        const ratio = base && slot.adapter !== 'node:http' ? sample.reqPerSec / base.reqPerSec : null;
        const cpuRatio = base && slot.adapter !== 'node:http' ? sample.cpuUsPerReq / base.cpuUsPerReq : null;
        const all = samples.get(key(slot)) ?? [];
        all.push({ round, ...sample, ratio, cpuRatio });
        samples.set(key(slot), all);
      }
    }
  } finally {
    load.stop();
  }
  const rows: CompareRow[] = list.map((slot) => {
    const s = samples.get(key(slot)) ?? [];
    const rps = s.map((x) => x.reqPerSec);
    const ratios = s.map((x) => x.ratio).filter((x): x is number => x !== null);
    const cpuRatios = s.map((x) => x.cpuRatio).filter((x): x is number => x !== null);
    return {
      id: slot.id,
      label: slot.label,
      adapter: slot.adapter,
      samples: s,
      median: {
        reqPerSec: median(rps),
        p50: median(s.map((x) => x.p50)),
        p99: median(s.map((x) => x.p99)),
        cpuUsPerReq: median(s.map((x) => x.cpuUsPerReq)),
        ratio: ratios.length ? median(ratios) : null,
        cpuRatio: cpuRatios.length ? median(cpuRatios) : null,
      },
      min: min(rps),
      max: max(rps),
      clientTimes: {
        holdP50: medianOrNull(s.map((x) => x.hold?.p50)),
        holdP99: medianOrNull(s.map((x) => x.hold?.p99)),
        queryP50: medianOrNull(s.map((x) => x.query?.p50)),
        queryP99: medianOrNull(s.map((x) => x.query?.p99)),
        heldMsPerReq: medianOrNull(s.map((x) => (x.hold && x.requests ? x.hold.totalMs / x.requests : null))),
        queryMsPerReq: medianOrNull(s.map((x) => (x.query && x.requests ? x.query.totalMs / x.requests : null))),
      },
    };
  });
  return {
    settings: {
      handler: config.handler,
      rounds: config.rounds,
      durationS: config.duration,
      warmupS: config.warmup,
      connections: config.connections,
      ...(config.rate ? { rate: config.rate } : {}),
      poolSize: config.poolSize,
      baseline: BASELINE,
    },
    rows,
    pgbench: pgbench
      ? {
          clients: config.pgbenchClients,
          samples: pgbenchSamples,
          medianTps: median(pgbenchSamples.map((s) => s.tps)),
          min: min(pgbenchSamples.map((s) => s.tps)),
          max: max(pgbenchSamples.map((s) => s.tps)),
        }
      : { skipped: PGBENCH_MISSING },
  };
}
