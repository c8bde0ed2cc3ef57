import pg from 'pg';
import type { ClientTimes, Durations } from './protocol.js';
import { DurationHistogram } from './stats.js';

const SUBMITTED = Symbol('submittedAt');

/** What a pg `Query` does with the server connection: its side of the Submittable interface of `client.query`. */
interface QueryInternals {
  [SUBMITTED]?: number;
  submit(connection: unknown): Error | null;
  handleReadyForQuery(connection: unknown): void;
}

/**
 * A server's client hold times, from its pool's public 'acquire' and
 * 'release' events, against its query times, from a query's submission to the
 * server to the server's ReadyForQuery (pg's `Query`, whichever pool or client
 * sends it). One per process: it wraps `Query`'s prototype. About 0.5 µs per
 * request of one query on the 2-core bench machine, mostly its four clock
 * reads, against 150–400 µs of server CPU per request.
 */
export class ClientTimesRecorder {
  private readonly hold = new DurationHistogram();
  private readonly query = new DurationHistogram();
  private watchingPool = false;

  constructor() {
    const proto = pg.Query.prototype as unknown as QueryInternals;
    const { submit, handleReadyForQuery } = proto;
    const query = this.query;
    proto.submit = function (this: QueryInternals, connection: unknown): Error | null {
      this[SUBMITTED] = performance.now();
      return submit.call(this, connection);
    };
    proto.handleReadyForQuery = function (this: QueryInternals, connection: unknown): void {
      const submitted = this[SUBMITTED];
      if (submitted !== undefined) query.record(performance.now() - submitted);
      handleReadyForQuery.call(this, connection);
    };
  }

  /** Records how long `pool` lends each client out; the WeakMap forgets the clients the pool drops. */
  watch(pool: pg.Pool): void {
    this.watchingPool = true;
    const acquiredAt = new WeakMap<pg.PoolClient, number>();
    const hold = this.hold;
    pool.on('acquire', (client) => acquiredAt.set(client, performance.now()));
    pool.on('release', (_error, client) => {
      const acquired = acquiredAt.get(client);
      if (acquired !== undefined) hold.record(performance.now() - acquired);
    });
  }

  /** Starts a measured window. */
  reset(): void {
    this.hold.reset();
    this.query.reset();
  }

  snapshot(): ClientTimes {
    return { hold: this.watchingPool ? durations(this.hold) : null, query: durations(this.query) };
  }
}

function durations(histogram: DurationHistogram): Durations {
  const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);
  return { count: histogram.count, totalMs: histogram.totalMs, p50: finite(histogram.quantile(0.5)), p99: finite(histogram.quantile(0.99)) };
}
