import { Inject, Injectable, Module, type DynamicModule, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { metrics, type MeterProvider } from '@opentelemetry/api';
import { DatasourceRegistry } from '../datasource/datasource.registry.js';
import { reportPools } from './pool-telemetry.js';

export interface PoolTelemetryModuleOptions {
  /** Where the instruments are created. Default: the global `MeterProvider` (`metrics.getMeterProvider()`) at startup. */
  meterProvider?: MeterProvider;
}

const POOL_TELEMETRY_OPTIONS = Symbol('PoolTelemetryOptions');

/** The instruments' meter: the package's name. */
const METER_NAME = 'nestjs-pg-pool';

/** Starts reporting when the application starts and stops when it stops. */
@Injectable()
class PoolTelemetryRegistration implements OnModuleInit, OnModuleDestroy {
  private stop: (() => void) | undefined;

  constructor(
    @Inject(POOL_TELEMETRY_OPTIONS) private readonly options: PoolTelemetryModuleOptions,
    private readonly registry: DatasourceRegistry,
  ) {}

  onModuleInit(): void {
    const meter = (this.options.meterProvider ?? metrics.getMeterProvider()).getMeter(METER_NAME);
    this.stop = reportPools(meter, () => this.registry.all());
  }

  onModuleDestroy(): void {
    this.stop?.();
  }
}

/**
 * OpenTelemetry metrics of every datasource of the application, under the
 * semantic conventions' `db.client.connection.*` names. Needs
 * `@opentelemetry/api`; import it from `nestjs-pg-pool/otel`.
 */
@Module({})
export class PoolTelemetryModule {
  static forRoot(options: PoolTelemetryModuleOptions = {}): DynamicModule {
    return {
      module: PoolTelemetryModule,
      providers: [{ provide: POOL_TELEMETRY_OPTIONS, useValue: options }, PoolTelemetryRegistration],
    };
  }
}
