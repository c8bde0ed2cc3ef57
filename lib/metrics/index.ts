/**
 * Pool metrics for a Prometheus registry (needs `prom-client`).
 * @module nestjs-pg-pool/metrics
 */
// Entry `nestjs-pg-pool/metrics`: kept apart from the main entry so that only
// applications that use it need prom-client installed.
export { PoolMetricsModule, type PoolMetricsModuleOptions } from './pool-metrics.module.js';
