/**
 * The main entry: `PoolModule`, the decorators, the scoped `PoolConnection`, transactions, pool
 * statistics and the typed errors.
 * @module nestjs-pg-pool
 */
export { PoolModule } from './pool.module.js';
export { InjectConnection, InjectPool } from './pool.decorators.js';
export { getConnectionToken, getPoolToken, type ConnectionRouting } from './pool.utils.js';
export { ReadFromReplica } from './replication/read-routing.js';
export type { ReplicaStatus } from './replication/replica-set.js';
export { DEFAULT_DATASOURCE_NAME } from './pool.constants.js';
export { PoolConnection } from './pool-connection.js';
export { ConnectionScope } from './connection/connection-scope.js';
export { ConnectionScopeInterceptor } from './scope-initializers/connection-scope.interceptor.js';
export { RequestDeadline } from './deadline/request-deadline.decorator.js';
export { setRequestDeadline } from './deadline/request-deadline.js';
export { setRequestSettings, type RequestSettingsOptions } from './settings/request-settings.js';
export { PoolStatsService } from './datasource/pool-stats.service.js';
export { POOL_STATS_BUCKETS, type DurationDistribution, type PoolStats } from './datasource/pool-stats.js';
export { Transactional, type AsyncMethod, type AsyncMethodDecorator } from './transaction/transactional.decorator.js';
export type { Transaction } from './transaction/transaction.js';
export { afterCommit, type AfterCommitWork } from './transaction/after-commit.js';
export type {
  IsolationLevel,
  Propagation,
  TransactionalOptions,
  TransactionOptions,
  TransactionRetryOptions,
} from './transaction/transaction-options.interface.js';
export type {
  LoadBalanceHosts,
  PoolModuleOptions,
  ReplicaOptions,
  TargetSessionAttrs,
} from './interfaces/pool-module-options.interface.js';
export type {
  PoolModuleAsyncOptions,
  PoolModuleFactoryOptions,
  PoolOptionsFactory,
} from './interfaces/pool-module-async-options.interface.js';
export * from './pool.errors.js';
