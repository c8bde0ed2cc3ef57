import { Inject, Injectable, Module, type DynamicModule, type OnModuleDestroy } from '@nestjs/common';
import { metrics, type MeterProvider } from '@opentelemetry/api';
import { DatasourceRegistry } from '../datasource/datasource.registry.js';
import { reportPools } from './pool-telemetry.js';

/** Options of `PoolTelemetryModule.forRoot`. */
export interface PoolTelemetryModuleOptions {
  /** Where the instruments are created. Default: the global `MeterProvider` (`metrics.getMeterProvider()`) as the application is created. */
  meterProvider?: MeterProvider;
}

const POOL_TELEMETRY_OPTIONS = Symbol('PoolTelemetryOptions');

/** The instruments' meter: the package's name. */
const METER_NAME = 'nestjs-pg-pool';

/**
 * Starts reporting as the application's providers are created, before any
 * datasource opens its first connection, and stops when the application stops.
 */
@Injectable()
class PoolTelemetryRegistration implements OnModuleDestroy {
  private readonly stop: () => void;

  constructor(@Inject(POOL_TELEMETRY_OPTIONS) options: PoolTelemetryModuleOptions, registry: DatasourceRegistry) {
    const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(METER_NAME);
    this.stop = reportPools(meter, registry);
  }

  onModuleDestroy(): void {
    this.stop();
  }
}

/**
 * OpenTelemetry metrics of every datasource of the application and of its
 * replicas' pools (each its own `db.client.connection.pool.name`), under the
 * semantic conventions' `db.client.connection.*` names. Needs
 * `@opentelemetry/api`; import it from `nestjs-pg-pool/otel`.
 */
@Module({})
export class PoolTelemetryModule {
  /**
   * Reports every datasource through a meter named `nestjs-pg-pool`, from when
   * the application's providers are created until the application stops.
   */
  static forRoot(options: PoolTelemetryModuleOptions = {}): DynamicModule {
    return {
      module: PoolTelemetryModule,
      providers: [{ provide: POOL_TELEMETRY_OPTIONS, useValue: options }, PoolTelemetryRegistration],
    };
  }
}
