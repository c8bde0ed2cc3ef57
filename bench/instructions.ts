import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
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
 * hence rounds and their median. valgrind runs one thread at a time, and
 * with its default scheduler the main thread, always busy, kept V8's
 * compiler threads waiting: some rounds then ran code V8 had not finished
 * optimising (the singleton's main thread counted 118,000 a request in one
 * run and 148,000 in another). The servers run with `--fair-sched=yes`,
 * which gives every thread its turn. What moves counts most then is the GC: with
 * V8's new space at its 128 MB, a scavenge comes every few thousand
 * requests and costs tens of millions of instructions, so a window of 2,000
 * requests holds none or one, and one server's count jumped from 127,000
 * to 143,000 per request between rounds. The tie-breaker is
 * therefore the main thread's count outside the GC (JavaScript, V8's and
 * libuv's work for it: callgrind's inclusive count of
 * `Heap::CollectGarbage` taken off), which moves by about 1 %; the whole
 * process's count, GC and V8's background threads included, is shown beside it.
 */
export interface InstructionsRow {
  id: string;
  label: string;
  adapter: string;
  /** Instructions per request of each round, all threads. */
  samples: number[];
  /** Their median, and its ratio to the baseline's median, same adapter (below 1 is cheaper). */
  instructionsPerRequest: number;
  ratio: number | null;
  /** The same on the main thread outside the GC (absent in results from before it was counted). */
  outsideGcSamples?: number[];
  outsideGcPerRequest?: number;
  outsideGcRatio?: number | null;
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

// The one entry point of V8's stop-the-world collections on the thread that allocates.
const COLLECT_GARBAGE = /^\s*([\d,]+) \([^)]*\)\s+\S*:v8::internal::Heap::CollectGarbage\(v8::internal::AllocationSpace,/m;

/** Instructions `dumpFile`'s thread spent inside the GC: the inclusive count callgrind_annotate gives `Heap::CollectGarbage`. */
async function gcInstructionsIn(dumpFile: string): Promise<number> {
  const { code, stdout, stderr } = await runCommand('callgrind_annotate', ['--inclusive=yes', '--threshold=100', dumpFile], 120_000);
  if (code !== 0) throw new Error(`callgrind_annotate ${dumpFile} failed: ${stderr}`);
  // A window without a collection has no such line.
  const match = COLLECT_GARBAGE.exec(stdout);
  return match ? Number(match[1].replaceAll(',', '')) : 0;
}

/** The first dump's instructions: on all threads (`<out>.1-NN`), and on the main thread (`<out>.1-01`) outside the GC. */
async function dumpedInstructions(out: string): Promise<{ all: number; outsideGc: number }> {
  const prefix = `${basename(out)}.1-`;
  const files = (await readdir(dirname(out))).filter((file) => file.startsWith(prefix));
  if (!files.includes(`${prefix}01`)) throw new Error(`no dump of the main thread beside ${out}`);
  const counts = await Promise.all(files.map((file) => instructionsIn(join(dirname(out), file))));
  const main = counts[files.indexOf(`${prefix}01`)];
  const outsideGc = main - (await gcInstructionsIn(join(dirname(out), `${prefix}01`)));
  return { all: counts.reduce((sum, n) => sum + n, 0), outsideGc };
}

/** One server under callgrind: warm-up uncounted, then instructions per request over the counted requests. */
async function count(load: LoadProcess, slot: Slot, out: string): Promise<{ all: number; outsideGc: number }> {
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
    const { all, outsideGc } = await dumpedInstructions(out);
    return { all: all / result.requests, outsideGc: outsideGc / result.requests };
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
  const outsideGcSamples = new Map<Slot, number[]>(list.map((slot) => [slot, []]));
  try {
    for (let round = 1; round <= config.instructionsRounds; round++) {
      log(`instructions round ${round}/${config.instructionsRounds}`);
      for (const slot of list) {
        const perRequest = await count(load, slot, join(dir, `${slot.adapter}-${slot.id}-${round}.out`));
        samples.get(slot)!.push(perRequest.all);
        outsideGcSamples.get(slot)!.push(perRequest.outsideGc);
        const shown = (n: number): string => Math.round(n).toLocaleString('en-US').padStart(11);
        log(`  ${slot.adapter.padEnd(9)} ${slot.id.padEnd(20)} ${shown(perRequest.all)} instructions/req, ${shown(perRequest.outsideGc)} on the main thread outside the GC`);
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
    outsideGcSamples: outsideGcSamples.get(slot)!,
    outsideGcPerRequest: median(outsideGcSamples.get(slot)!),
    outsideGcRatio: null,
  }));
  for (const row of rows) {
    const base = rows.find((r) => r.id === BASELINE && r.adapter === row.adapter);
    if (!base || row.adapter === 'node:http') continue;
    row.ratio = row.instructionsPerRequest / base.instructionsPerRequest;
    row.outsideGcRatio = row.outsideGcPerRequest! / base.outsideGcPerRequest!;
  }
  return {
    settings: { handler: config.handler, rounds: config.instructionsRounds, warmupRequests: config.instructionsWarmup, requests: config.instructionsRequests, connections: config.connections, countedConnections: config.instructionsConnections, poolSize: config.poolSize },
    rows,
  };
}
