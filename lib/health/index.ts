/**
 * Terminus health indicators for every datasource (needs `@nestjs/terminus`).
 * @module nestjs-pg-pool/health
 */
// Entry `nestjs-pg-pool/health`: kept apart from the main entry so that only
// applications that use it need @nestjs/terminus installed.
export { PoolHealthIndicator } from './pool.health-indicator.js';
export type { PingCheckOptions, PoolCheckOptions, ReplicaCheckOptions } from './pool-health-options.interface.js';
