import type { PoolConfig } from 'pg';

/**
 * Options of one datasource: everything node-postgres' `PoolConfig` takes
 * (connection string or host/port/user/password/database, ssl, max, min,
 * idleTimeoutMillis, connectionTimeoutMillis, maxLifetimeSeconds,
 * statement_timeout, application_name, …) plus the module's own.
 */
export interface PoolModuleOptions extends PoolConfig {
  /** Datasource name, used by `@InjectPool(name)` and `@InjectConnection(name)`. Default `'default'`. */
  name?: string;
  /** How many more times the startup check (`SELECT 1`) is tried after a failure. Default 3. */
  retryAttempts?: number;
  /** Milliseconds between two startup attempts. Default 1000. */
  retryDelay?: number;
  /**
   * On shutdown, how long to wait for checked-out clients to come back before
   * their connections are closed anyway. Default 10000 ms.
   */
  drainTimeoutMillis?: number;
}
