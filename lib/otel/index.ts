/**
 * Pool metrics under OpenTelemetry's semantic conventions (needs `@opentelemetry/api`).
 * @module nestjs-pg-pool/otel
 */
// Entry `nestjs-pg-pool/otel`: kept apart from the main entry so that only
// applications that use it need @opentelemetry/api installed.
export { PoolTelemetryModule, type PoolTelemetryModuleOptions } from './pool-telemetry.module.js';
