import { Module, type DynamicModule } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { Registry } from 'prom-client';
// In an application these come from 'nestjs-pg-pool', 'nestjs-pg-pool/health', 'nestjs-pg-pool/metrics' and 'nestjs-pg-pool/otel'.
import { PoolModule } from '../lib/index.js';
import { PoolHealthIndicator } from '../lib/health/index.js';
import { PoolMetricsModule } from '../lib/metrics/index.js';
import { PoolTelemetryModule } from '../lib/otel/index.js';
import { AUDIT_DATASOURCE } from './app.constants.js';
import { AuditController } from './audit/audit.controller.js';
import { AuditService } from './audit/audit.service.js';
import type { SampleDatabases } from './databases/sample-databases.js';
import { HealthController } from './health/health.controller.js';
import { MetricsController } from './metrics/metrics.controller.js';
import { NotesController } from './notes/notes.controller.js';
import { NotesService } from './notes/notes.service.js';
import { RootController } from './root/root.controller.js';
import { SlowController } from './slow/slow.controller.js';

const APPLICATION_NAME = 'nestjs-pg-pool-sample';

@Module({})
export class AppModule {
  /** The app on the databases `resolveDatabases()` picked (the probe and the embedded fallback are async, hence outside). */
  static forRoot(databases: SampleDatabases): DynamicModule {
    // One registry per application instance, exposed on /metrics.
    const registry = new Registry();
    return {
      module: AppModule,
      imports: [
        PoolModule.forRoot({ connectionString: databases.default, max: 10, application_name: APPLICATION_NAME }),
        PoolModule.forRoot({ name: AUDIT_DATASOURCE, connectionString: databases.audit, max: 5, application_name: APPLICATION_NAME }),
        TerminusModule.forRoot({ errorLogStyle: 'pretty' }),
        PoolMetricsModule.forRoot({ registry }),
        // Reports through the global MeterProvider: a no-op unless SAMPLE_TELEMETRY started an SDK (telemetry.ts).
        PoolTelemetryModule.forRoot(),
      ],
      controllers: [RootController, NotesController, AuditController, HealthController, MetricsController, SlowController],
      providers: [NotesService, AuditService, PoolHealthIndicator, { provide: Registry, useValue: registry }],
    };
  }
}
