import type { PoolStats } from '../datasource/pool-stats.js';

/** What `poolCheck` reports of one pool, and its verdict against the check's thresholds. */
export interface PoolLoad {
  figures: { total: number; idle: number; inUse: number; waiting: number; max: number; utilization: number; connectionsByHost?: Readonly<Record<string, number>> };
  /** Down when more than `maxWaiting` wait, degraded when the share in use passes `maxUtilization`. */
  status: 'up' | 'degraded' | 'down';
  /** Why, when not up. */
  message?: string;
}

/** Judges one pool's figures; `maxWaiting` defaults to the pool's own `max`. */
export function poolLoad(stats: PoolStats, maxWaiting: number | undefined, maxUtilization: number): PoolLoad {
  const { total, idle, inUse, waiting, max, connectionsByHost } = stats;
  const figures = {
    total,
    idle,
    inUse,
    waiting,
    max,
    utilization: Math.round((inUse / max) * 100) / 100,
    // Where the connections are, for a datasource that chooses among hosts.
    ...(connectionsByHost ? { connectionsByHost } : {}),
  };
  const waitingLimit = maxWaiting ?? max;
  if (waiting > waitingLimit) {
    return { figures, status: 'down', message: `${waiting} requests waiting for a connection (more than ${waitingLimit})` };
  }
  if (inUse / max > maxUtilization) {
    return { figures, status: 'degraded', message: `${inUse} of ${max} connections in use (more than ${Math.round(maxUtilization * 100)}%)` };
  }
  return { figures, status: 'up' };
}
