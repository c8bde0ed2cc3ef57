/** Options of `PoolHealthIndicator.pingCheck`. */
export interface PingCheckOptions {
  /** Datasource to ping. Default `'default'`. */
  name?: string;
  /** Milliseconds to get a client and run `SELECT 1` before answering down. Default 1000. */
  timeout?: number;
  /**
   * Milliseconds to reuse a result (Terminus' `cacheFor`), so that a `/health`
   * scraped often runs at most one ping per period. Default: no cache.
   */
  cacheFor?: number;
}

/** Options of `PoolHealthIndicator.poolCheck`. */
export interface PoolCheckOptions {
  /** Datasource to check, with its replicas; or one replica pool alone (`'default (replica 1)'`). Default `'default'`. */
  name?: string;
  /** Down when more requests than this wait for a connection (a replica: degraded). Default: the pool's `max`. */
  maxWaiting?: number;
  /** Degraded when the share of connections in use (0 to 1) passes this, in any of the pools checked. Default 0.9. */
  maxUtilization?: number;
}

/** Options of `PoolHealthIndicator.replicaCheck`. */
export interface ReplicaCheckOptions {
  /** Datasource whose replicas to check. Default `'default'`. */
  name?: string;
  /** Milliseconds each replica has to answer `SELECT 1`. Default 1000. */
  timeout?: number;
}
