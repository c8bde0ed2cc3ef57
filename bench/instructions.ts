import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BASELINE, slots, startServer, type Slot } from './compare.js';
import { config } from './config.js';
import { commandPath, LoadProcess, runCommand } from './processes.js';
import { median } from './stats.js';

/**
 * Instructions each contender's server executes per request, counted by
 * valgrind's callgrind (user space: JavaScript, V8, the GC and libuv, on all
 * of the server's threads; not the kernel's socket work). A count moves far
 * less than a time with the machine's load, so it tells apart contenders
 * whose CPU time per request is within a shared machine's swing. In each
 * round, every server runs once under callgrind: a warm-up with counting off
 * (long enough for V8 to have optimised the hot paths: a short one counts
 * interpreted code), then counting on (`callgrind_control -i on`, `-z`), a
 * fixed number of requests, and a dump (`-d`) whose total is divided by them.
 * Counts still differ between runs (V8 optimises on background threads, and
 * how many requests one turn of the event loop serves depends on timing),
 * hence rounds and their median.
 */
export interface InstructionsRow {
  id: string;
  label: string;
  adapter: string;
  /** Instructions per request of each round. */
  samples: number[];
  /** Their median, and its ratio to the baseline's median, same adapter (below 1 is cheaper). */
  instructionsPerRequest: number;
  ratio: number | null;
}

export type InstructionsResult = { settings: Record<string, unknown>; rows: InstructionsRow[] } | { skipped: string };

export const VALGRIND_MISSING =
  'valgrind not found on PATH: install it with `apt-get install valgrind` (callgrind and callgrind_control come with it). ' +
  'Skipping the instruction counts.';

async function callgrindControl(args: string[], pid: number): Promise<void> {
  const { code, stderr } = await runCommand('callgrind_control', [...args, String(pid)], 60_000);
  if (code !== 0) throw new Error(`callgrind_control ${args.join(' ')} ${pid} failed: ${stderr}`);
}

/** The `summary:` line of a callgrind dump: instructions executed (Ir) since the last zeroing. */
async function instructionsIn(dumpFile: string): Promise<number> {
  const match = /^summary:\s+(\d+)/m.exec(await readFile(dumpFile, 'utf8'));
  if (!match) throw new Error(`no summary line in ${dumpFile}`);
  return Number(match[1]);
}

/** One server under callgrind: warm-up uncounted, then instructions per request over the counted requests. */
async function count(load: LoadProcess, slot: Slot, out: string): Promise<number> {
  const server = await startServer(slot, { callgrindOut: out });
  try {
    const url = `http://127.0.0.1:${server.port}/`;
    // Bounded by the request counts; the duration only guards against a server that stops answering.
    const run = (amount: number, connections: number) => load.run({ url, connections, duration: 3_600, amount });
    await run(config.instructionsWarmup, config.connections);
    await callgrindControl(['-i', 'on'], server.pid);
    await callgrindControl(['-z'], server.pid);
    const result = await run(config.instructionsRequests, config.instructionsConnections);
    await callgrindControl(['-d'], server.pid);
    if (result.requests === 0) throw new Error(`${slot.adapter}/${slot.id} answered no request under callgrind`);
    return (await instructionsIn(`${out}.1`)) / result.requests;
  } finally {
    await server.stop();
  }
}

export async function runInstructions(log: (line: string) => void): Promise<InstructionsResult> {
  if (!(await commandPath('valgrind')) || !(await commandPath('callgrind_control'))) {
    log(VALGRIND_MISSING);
    return { skipped: VALGRIND_MISSING };
  }
  const dir = await mkdtemp(join(tmpdir(), 'npp-callgrind-'));
  const load = LoadProcess.start();
  const list = slots();
  const samples = new Map<Slot, number[]>(list.map((slot) => [slot, []]));
  try {
    for (let round = 1; round <= config.instructionsRounds; round++) {
      log(`instructions round ${round}/${config.instructionsRounds}`);
      for (const slot of list) {
        const perRequest = await count(load, slot, join(dir, `${slot.adapter}-${slot.id}-${round}.out`));
        samples.get(slot)!.push(perRequest);
        log(`  ${slot.adapter.padEnd(9)} ${slot.id.padEnd(20)} ${Math.round(perRequest).toLocaleString('en-US').padStart(11)} instructions/req`);
      }
    }
  } finally {
    load.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const rows: InstructionsRow[] = list.map((slot) => ({
    id: slot.id,
    label: slot.label,
    adapter: slot.adapter,
    samples: samples.get(slot)!,
    instructionsPerRequest: median(samples.get(slot)!),
    ratio: null,
  }));
  for (const row of rows) {
    const base = rows.find((r) => r.id === BASELINE && r.adapter === row.adapter);
    row.ratio = base && row.adapter !== 'node:http' ? row.instructionsPerRequest / base.instructionsPerRequest : null;
  }
  return {
    settings: { handler: config.handler, rounds: config.instructionsRounds, warmupRequests: config.instructionsWarmup, requests: config.instructionsRequests, connections: config.connections, countedConnections: config.instructionsConnections, poolSize: config.poolSize },
    rows,
  };
}
