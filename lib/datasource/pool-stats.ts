import type pg from 'pg';
import { connectMillis } from './connect-time.js';

/**
 * Upper bounds, in seconds, of the buckets of the acquire-wait and hold-time
 * distributions: from a sub-millisecond checkout of an idle client up to the
 * long waits and holds worth an alert.
 */
export const POOL_STATS_BUCKETS: readonly number[] = Object.freeze([
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);

/** A distribution of durations, shaped like a Prometheus histogram. */
export interface DurationDistribution {
  /** Cumulative: `count` is the number of observations of at most `le` seconds. Ascending `le`. */
  readonly buckets: ReadonlyArray<{
    /** Upper bound of the bucket, in seconds: one of `POOL_STATS_BUCKETS`. */
    readonly le: number;
    /** Observations of at most `le` seconds, those of the smaller buckets included. */
    readonly count: number;
  }>;
  /** Number of observations (the implicit `+Inf` bucket). */
  readonly count: number;
  /** Sum of the observations, in seconds. */
  readonly sum: number;
}

/** What a datasource's pool, or one of its replicas' pools, is doing now, and what it has done since startup. */
export interface PoolStats {
  /** Name of the datasource, or of the replica pool: `<datasource> (replica N)`, N counting from 1 in `replicas` order. */
  readonly datasource: string;
  /** For a replica pool, the name of the datasource it is a replica of; absent for a datasource's own pool. */
  readonly replicaOf?: string;
  /** Open connections, connecting ones included. */
  readonly total: number;
  /** Open connections waiting in the pool. */
  readonly idle: number;
  /** Connections checked out (`total - idle`). */
  readonly inUse: number;
  /** Requests queued for a connection. */
  readonly waiting: number;
  /** The pool's `max`. */
  readonly max: number;
  /** The pool's `min`. */
  readonly min: number;
  /** Connections lent by the module (request scopes, `ConnectionScope.run`, queries outside a scope, health pings). */
  readonly acquired: number;
  /** Connections released (or destroyed) after the module lent them. */
  readonly released: number;
  /** Connections the pool opened. */
  readonly created: number;
  /** Connections the pool closed (idle timeout, broken, shutdown). */
  readonly destroyed: number;
  /** Requests for a connection that gave up waiting. */
  readonly acquireTimeouts: number;
  /** Connections that failed to open, and connections that broke idle or in use. */
  readonly errors: number;
  /** How long requests waited for a connection. */
  readonly acquireWait: DurationDistribution;
  /** How long connections stayed checked out. */
  readonly holdTime: DurationDistribution;
  /**
   * Of a datasource with several hosts or a `targetSessionAttrs`: its open
   * connections by the host each is on (`host:port`). Absent otherwise.
   */
  readonly connectionsByHost?: Readonly<Record<string, number>>;
}

/** Fixed-bucket histogram: recording is a short loop and two additions, no allocation. */
class DurationHistogram {
  private readonly counts = new Float64Array(POOL_STATS_BUCKETS.length);
  private count = 0;
  private sum = 0;

  record(milliseconds: number): void {
    const seconds = milliseconds / 1000;
    this.count++;
    this.sum += seconds;
    for (let i = 0; i < POOL_STATS_BUCKETS.length; i++) {
      if (seconds <= POOL_STATS_BUCKETS[i]) {
        this.counts[i]++;
        return;
      }
    }
  }

  snapshot(): DurationDistribution {
    let cumulative = 0;
    const buckets = POOL_STATS_BUCKETS.map((le, i) => ({ le, count: (cumulative += this.counts[i]) }));
    return { buckets, count: this.count, sum: this.sum };
  }
}

/** Told of each new connection, checkout and release as it happens, durations in milliseconds (see PoolStatsRecorder.observe()). */
export interface PoolStatsObserver {
  connected(connectMilliseconds: number): void;
  acquired(waitMilliseconds: number): void;
  released(heldMilliseconds: number): void;
}

/**
 * The counters of one datasource. The datasource calls the `record*` methods
 * on every checkout and release, so they only add numbers; reading them
 * (`snapshot`) is where the copies are made.
 */
export class PoolStatsRecorder {
  private acquired = 0;
  private released = 0;
  private created = 0;
  private destroyed = 0;
  private acquireTimeouts = 0;
  private errors = 0;
  private readonly acquireWait = new DurationHistogram();
  private readonly holdTime = new DurationHistogram();
  private readonly observers = new Set<PoolStatsObserver>();
  /** Open connections by `host:port`, kept for datasources that choose among hosts. */
  private readonly byHost: Map<string, number> | undefined;

  constructor(
    private readonly name: string,
    private readonly pool: pg.Pool,
    private readonly replicaOf?: string,
    countByHost = false,
  ) {
    if (countByHost) {
      const byHost = (this.byHost = new Map());
      const count = (client: pg.Client, change: number): void => {
        const host = `${client.host}:${client.port}`;
        const left = (byHost.get(host) ?? 0) + change;
        if (left > 0) byHost.set(host, left);
        else byHost.delete(host);
      };
      pool.on('connect', (client) => count(client as pg.Client, 1));
      pool.on('remove', (client) => count(client as pg.Client, -1));
    }
    pool.on('connect', (client) => {
      this.created++;
      const millis = connectMillis(client);
      if (millis !== undefined) for (const observer of this.observers) observer.connected(millis);
    });
    pool.on('remove', () => void this.destroyed++);
    // An idle connection that failed; the datasource logs it.
    pool.on('error', () => void this.errors++);
    // A checked-out connection released broken: pg-pool closes it.
    pool.on('release', (error: Error | undefined) => void (error && this.errors++));
  }

  /** Connections the module lent out and has not had back yet. */
  get lentOut(): number {
    return this.acquired - this.released;
  }

  recordAcquired(waitMilliseconds: number): void {
    this.acquired++;
    this.acquireWait.record(waitMilliseconds);
    for (const observer of this.observers) observer.acquired(waitMilliseconds);
  }

  recordReleased(heldMilliseconds: number): void {
    this.released++;
    this.holdTime.record(heldMilliseconds);
    for (const observer of this.observers) observer.released(heldMilliseconds);
  }

  /** Tells `observer` of every later checkout and release, until the returned function is called. */
  observe(observer: PoolStatsObserver): () => void {
    this.observers.add(observer);
    return () => void this.observers.delete(observer);
  }

  /** A request for a connection gave up waiting. */
  recordAcquireTimeout(): void {
    this.acquireTimeouts++;
  }

  /** A request for a connection failed for another reason than a timeout. */
  recordError(): void {
    this.errors++;
  }

  /** Connections open and past their handshake (the pool's total also counts those being opened). */
  connectedCount(): number {
    return this.created - this.destroyed;
  }

  snapshot(): PoolStats {
    const { pool } = this;
    return {
      datasource: this.name,
      ...(this.replicaOf === undefined ? {} : { replicaOf: this.replicaOf }),
      total: pool.totalCount,
      idle: pool.idleCount,
      inUse: pool.totalCount - pool.idleCount,
      waiting: pool.waitingCount,
      max: pool.options.max,
      min: pool.options.min ?? 0,
      acquired: this.acquired,
      released: this.released,
      created: this.created,
      destroyed: this.destroyed,
      acquireTimeouts: this.acquireTimeouts,
      errors: this.errors,
      acquireWait: this.acquireWait.snapshot(),
      holdTime: this.holdTime.snapshot(),
      ...(this.byHost ? { connectionsByHost: Object.fromEntries(this.byHost) } : {}),
    };
  }
}
