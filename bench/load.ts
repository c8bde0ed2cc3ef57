import autocannon from 'autocannon';
import { runOpenLoop } from './open-loop.js';
import type { LoadRequest, LoadResult } from './protocol.js';

/**
 * The load generator, in a process of its own so that it never shares the
 * server's event loop: receives a LoadRequest over IPC, runs autocannon
 * (as many requests as the server answers) or, with a rate, the open-loop
 * generator; answers with a LoadResult. Bounded by `duration` (and `amount`).
 */
function run(request: LoadRequest): Promise<LoadResult> {
  if (request.rate) return runOpenLoop({ ...request, rate: request.rate });
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: request.url,
        connections: request.connections,
        pipelining: 1,
        duration: request.duration,
        ...(request.amount ? { amount: request.amount } : {}),
        timeout: 10,
      },
      (error, result) => {
        clearTimeout(guard);
        if (error) return reject(error);
        const durationS = result.duration;
        const ok = result['2xx'];
        resolve({
          requests: ok,
          non2xx: result.non2xx,
          errors: result.errors,
          timeouts: result.timeouts,
          durationS,
          reqPerSec: ok / durationS,
          p50: result.latency.p50,
          p99: result.latency.p99,
          latencyMean: result.latency.average,
        });
      },
    );
    // `amount` makes autocannon ignore `duration`: keep the time bound anyway.
    const guard = setTimeout(() => instance.stop(), (request.duration + 1) * 1000);
  });
}

process.on('message', (request: LoadRequest) => {
  run(request).then(
    (result) => process.send?.({ ok: true, result }),
    (error: unknown) => process.send?.({ ok: false, message: String(error) }),
  );
});
process.on('disconnect', () => process.exit(0));
