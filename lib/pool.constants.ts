/** Name a datasource gets when `PoolModule.forRoot()` is given none. */
export const DEFAULT_DATASOURCE_NAME = 'default';

export const DEFAULT_RETRY_ATTEMPTS = 3;
export const DEFAULT_RETRY_DELAY_MS = 1000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 10_000;

/** Logger context of every message the module writes. */
export const POOL_LOGGER_CONTEXT = 'PoolModule';
/** Default `connectionTimeoutMillis`: how long an acquire may wait, so no request hangs for ever. */
export const DEFAULT_ACQUIRE_TIMEOUT_MS = 10_000;
export const DEFAULT_LIFETIME_JITTER = 0.1;
/** Default `replicaRetryMillis`: how long a failed replica is skipped. */
export const DEFAULT_REPLICA_RETRY_MS = 5000;
