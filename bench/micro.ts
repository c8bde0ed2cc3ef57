import { fileURLToPath } from 'node:url';
import { config } from './config.js';
import { VARIANTS, type Variant } from './micro-variants.js';
import { runCommand } from './processes.js';
import { max, median, min } from './stats.js';

export interface MicroRow {
  variant: Variant;
  description: string;
  samples: Array<{ round: number; opsPerSec: number; cpuUsPerOp: number }>;
  medianOpsPerSec: number;
  medianCpuUsPerOp: number;
  min: number;
  max: number;
  /** Median over rounds of ops/s over its pg.Pool counterpart's, same round. */
  ratioToPool: number | null;
}

export interface MicroResult {
  settings: Record<string, unknown>;
  rows: MicroRow[];
}

const BASELINE_OF: Partial<Record<Variant, Variant>> = {
  'scope.acquire+release': 'pool.connect+release',
  'scope.query': 'pool.query',
  'connection.query': 'pool.query',
};

export async function runMicro(log: (line: string) => void): Promise<MicroResult> {
  const worker = fileURLToPath(new URL('./micro-worker.js', import.meta.url));
  const variants = Object.keys(VARIANTS) as Variant[];
  const samples = new Map<Variant, Array<{ round: number; opsPerSec: number; cpuUsPerOp: number }>>();
  for (let round = 1; round <= config.microRounds; round++) {
    log(`micro round ${round}/${config.microRounds}`);
    for (const variant of variants) {
      const { code, stdout, stderr } = await runCommand(config.node, [worker, variant], (config.microSeconds + 60) * 1000);
      if (code !== 0) throw new Error(`micro ${variant} failed: ${stderr}`);
      const result = JSON.parse(stdout.trim().split('\n').pop()!) as { opsPerSec: number; cpuUsPerOp: number };
      log(`  ${variant.padEnd(22)} ${result.opsPerSec.toFixed(0).padStart(7)} ops/s  ${result.cpuUsPerOp.toFixed(1)} µs CPU/op`);
      const list = samples.get(variant) ?? [];
      list.push({ round, opsPerSec: result.opsPerSec, cpuUsPerOp: result.cpuUsPerOp });
      samples.set(variant, list);
    }
  }
  const rows = variants.map((variant): MicroRow => {
    const s = samples.get(variant)!;
    const base = BASELINE_OF[variant];
    const ratios = base ? s.map((x, i) => x.opsPerSec / samples.get(base)![i].opsPerSec) : [];
    return {
      variant,
      description: VARIANTS[variant],
      samples: s,
      medianOpsPerSec: median(s.map((x) => x.opsPerSec)),
      medianCpuUsPerOp: median(s.map((x) => x.cpuUsPerOp)),
      min: min(s.map((x) => x.opsPerSec)),
      max: max(s.map((x) => x.opsPerSec)),
      ratioToPool: base ? median(ratios) : null,
    };
  });
  return { settings: { rounds: config.microRounds, seconds: config.microSeconds, concurrency: config.microConcurrency, poolSize: config.poolSize }, rows };
}
