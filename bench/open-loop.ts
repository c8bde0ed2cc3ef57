import { Agent, request as httpRequest } from 'node:http';
import type { LoadRequest, LoadResult } from './protocol.js';

/**
 * A fixed-rate (open-loop) load: request i is due at start + i/rate whatever
 * the server's answers, and its latency counts from that due time, so time
 * spent queued behind slow answers is measured rather than hidden.
 *
 * autocannon's `overallRate` is not that: each connection sends its share of
 * the second back to back and then waits for the next second (a burst at full
 * speed every second), and its coordinated-omission correction assumes a 1 ms
 * interval per connection, which multiplies every slow answer into many
 * synthetic samples. Its p99 at a "fixed rate" read 2–3× the saturated p99.
 */
export function runOpenLoop(load: LoadRequest & { rate: number }): Promise<LoadResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: load.connections });
  const intervalMs = 1000 / load.rate;
  const total = Math.floor(load.rate * load.duration);
  const latencies = new Float64Array(total);
  const counts = { ok: 0, non2xx: 0, errors: 0, timeouts: 0, done: 0 };
  const start = performance.now();
  let issued = 0;

  return new Promise((resolve) => {
    const finishOne = () => {
      if (++counts.done === total) finish();
    };
    const send = (dueAt: number) => {
      const req = httpRequest(load.url, { agent, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) {
            latencies[counts.ok++] = performance.now() - dueAt;
          } else counts.non2xx++;
          finishOne();
        });
      });
      req.on('timeout', () => {
        counts.timeouts++;
        req.destroy();
      });
      req.on('error', () => {
        counts.errors++;
        finishOne();
      });
      req.end();
    };
    // Timers fire about once a millisecond: each tick sends every request due by now, each with its own due time.
    const tick = () => {
      const due = Math.min(total, Math.floor((performance.now() - start) / intervalMs) + 1);
      while (issued < due) send(start + issued++ * intervalMs);
      if (issued < total) setTimeout(tick, Math.max(0, start + issued * intervalMs - performance.now()));
    };
    const finish = () => {
      agent.destroy();
      const measured = latencies.subarray(0, counts.ok).sort();
      const at = (q: number) => (counts.ok ? measured[Math.min(counts.ok - 1, Math.floor(q * counts.ok))] : 0);
      const durationS = (performance.now() - start) / 1000;
      resolve({
        requests: counts.ok,
        non2xx: counts.non2xx,
        errors: counts.errors,
        timeouts: counts.timeouts,
        durationS,
        reqPerSec: counts.ok / durationS,
        p50: round(at(0.5)),
        p99: round(at(0.99)),
        latencyMean: round(measured.reduce((sum, x) => sum + x, 0) / Math.max(1, counts.ok)),
      });
    };
    tick();
  });
}

const round = (ms: number) => Math.round(ms * 100) / 100;
