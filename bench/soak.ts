import { config } from './config.js';
import { LoadProcess, ServerProcess } from './processes.js';
import type { LoadResult, ServerStats } from './protocol.js';
import { sleep } from './stats.js';

/** The load generator's figures of the soak, plus memory at start and end. */
export interface SoakResult extends Omit<LoadResult, 'latencyMean'> {
  settings: { maxRequests: number; maxSeconds: number; connections: number; route: string; adapter: string };
  /** After warm-up and a full GC. */
  start: ServerStats;
  /** After the load and a full GC. */
  end: ServerStats;
  heapGrowth: number;
  rssGrowth: number;
  /** Memory every 10 s under load (no GC forced). */
  trace: Array<{ t: number; rss: number; heapUsed: number }>;
}

/**
 * The sample app's read route (GET /notes/:id) under load until
 * SOAK_REQUESTS requests or SOAK_SECONDS seconds, whichever comes first.
 */
export async function runSoak(log: (line: string) => void): Promise<SoakResult> {
  const adapter = 'express';
  const server = await ServerProcess.start('sample-app', adapter);
  const load = LoadProcess.start();
  try {
    const base = `http://127.0.0.1:${server.port}`;
    const created = await fetch(`${base}/notes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: 'soak', body: 'read by the soak test' }),
    });
    if (!created.ok) throw new Error(`cannot seed a note: ${created.status}`);
    const { id } = (await created.json()) as { id: number };
    const url = `${base}/notes/${id}`;
    await load.run({ url, connections: config.connections, duration: 5 });
    const start = await server.stats(true);
    log(`soak: up to ${config.soakRequests} requests or ${config.soakSeconds} s on GET /notes/${id}; heap ${mb(start.heapUsed)}, rss ${mb(start.rss)}`);
    const began = Date.now();
    const trace: SoakResult['trace'] = [];
    const sampler = setInterval(() => {
      server.stats().then(
        (s) => trace.push({ t: Math.round((Date.now() - began) / 1000), rss: s.rss, heapUsed: s.heapUsed }),
        () => undefined,
      );
    }, 10_000);
    const result = await load.run({ url, connections: config.connections, duration: config.soakSeconds, amount: config.soakRequests }).finally(() => clearInterval(sampler));
    await sleep(1000); // let the last cut-off requests end their scopes
    const end = await server.stats(true);
    const heapGrowth = (end.heapUsed - start.heapUsed) / start.heapUsed;
    const rssGrowth = (end.rss - start.rss) / start.rss;
    log(
      `soak: ${result.requests} requests in ${result.durationS} s (${result.reqPerSec.toFixed(0)} req/s), ` +
        `heap ${mb(start.heapUsed)} -> ${mb(end.heapUsed)} (${(heapGrowth * 100).toFixed(1)} %), rss ${mb(start.rss)} -> ${mb(end.rss)}, ` +
        `checked out at end: ${end.checkedOut} (module leases: ${end.leased})`,
    );
    return {
      settings: { maxRequests: config.soakRequests, maxSeconds: config.soakSeconds, connections: config.connections, route: 'GET /notes/:id', adapter },
      requests: result.requests,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
      durationS: result.durationS,
      reqPerSec: result.reqPerSec,
      p50: result.p50,
      p99: result.p99,
      start,
      end,
      heapGrowth,
      rssGrowth,
      trace,
    };
  } finally {
    load.stop();
    await server.stop();
  }
}

export const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
