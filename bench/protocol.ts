/** Messages between the orchestrator and a server or load process (IPC). */
export type ToServer = { type: 'begin' } | { type: 'end' } | { type: 'stats'; gc?: boolean } | { type: 'shutdown' };

export interface ServerStats {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  /** Clients out of the pool (`totalCount - idleCount`), when the server has a pool. */
  checkedOut: number | null;
  /** Clients nestjs-pg-pool counts as lent out, for its contenders. */
  leased: number | null;
}

/** Durations recorded over the measured window, in ms (quantiles null when there were none). */
export interface Durations {
  count: number;
  totalMs: number;
  p50: number | null;
  p99: number | null;
}

/** How long the server's pool lent its clients out (null without a pool), and how long its queries took; both null unless recorded. */
export interface ClientTimes {
  hold: Durations | null;
  query: Durations | null;
}

/** The server's argument that turns the recording of client times on. */
export const CLIENT_TIMES_FLAG = '--client-times';

export type FromServer =
  | { type: 'ready'; port: number }
  | { type: 'begun' }
  | ({ type: 'ended'; cpuUserUs: number; cpuSystemUs: number; elapsedMs: number } & ClientTimes)
  | ({ type: 'stats' } & ServerStats)
  | { type: 'error'; message: string };

export interface LoadRequest {
  url: string;
  connections: number;
  duration: number;
  /** Stop after this many requests (duration still bounds the run). */
  amount?: number;
  /** Requests per second over all connections; 0 or absent: as many as the server answers. */
  rate?: number;
}

export interface LoadResult {
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  durationS: number;
  reqPerSec: number;
  p50: number;
  p99: number;
  latencyMean: number;
}
