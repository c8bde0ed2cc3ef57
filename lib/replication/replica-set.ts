import type { Datasource } from '../datasource/datasource.js';

/** What a health check or a log says of one replica. */
export interface ReplicaStatus {
  /** Datasource name of the replica, e.g. `default (replica 1)`. */
  name: string;
  /** `user@host:port/database`, no secrets. */
  target: string;
  /**
   * False while the replica is out of rotation: from a failure until a read or
   * a health check next succeeds on it (reads try it again after `replicaRetryMillis`).
   */
  up: boolean;
  /** Why it was last taken out of rotation, while it is. */
  reason?: string;
}

/**
 * The replicas of one datasource, taken in turn. A replica that fails to
 * connect or loses its connection is skipped for `retryMillis`, then tried
 * again; while none is up, reads go to the primary.
 */
export class ReplicaSet {
  private next = 0;
  private readonly downUntil = new Map<Datasource, { until: number; reason: string }>();

  constructor(
    readonly replicas: readonly Datasource[],
    private readonly retryMillis: number,
  ) {}

  /** Replicas to try for one read, healthy ones first in round-robin order. */
  candidates(): Datasource[] {
    const now = Date.now();
    const start = this.next++ % this.replicas.length;
    const ordered = [...this.replicas.slice(start), ...this.replicas.slice(0, start)];
    return ordered.filter((replica) => (this.downUntil.get(replica)?.until ?? 0) <= now);
  }

  markDown(replica: Datasource, reason: string): void {
    if (!this.downUntil.has(replica)) replica.warn(`taken out of rotation (${reason}); reads go elsewhere`);
    this.downUntil.set(replica, { until: Date.now() + this.retryMillis, reason });
  }

  markUp(replica: Datasource): void {
    if (this.downUntil.delete(replica)) replica.warn('back in rotation');
  }

  status(): ReplicaStatus[] {
    return this.replicas.map((replica) => {
      const down = this.downUntil.get(replica);
      return { name: replica.name, target: replica.target, up: !down, ...(down ? { reason: down.reason } : {}) };
    });
  }

  /** Startup check: an unreachable replica is only taken out of rotation, never fails the bootstrap. */
  async check(): Promise<void> {
    await Promise.all(
      this.replicas.map(async (replica) => {
        try {
          await replica.checkConnection();
        } catch (error) {
          this.markDown(replica, error instanceof Error ? error.message : String(error));
        }
      }),
    );
  }

  /** Closes every replica pool, their drain timeouts counted from `since` (see Datasource.close()). */
  close(since?: number): Promise<void[]> {
    return Promise.all(this.replicas.map((replica) => replica.close(since)));
  }
}
