import { Module, type DynamicModule, type Provider } from '@nestjs/common';
import { PoolConnection } from './pool-connection.js';
import type { Datasource } from './datasource/datasource.js';
import { DatasourceRegistry } from './datasource/datasource.registry.js';
import type { PoolModuleAsyncOptions, PoolOptionsFactory } from './interfaces/pool-module-async-options.interface.js';
import type { PoolModuleOptions } from './interfaces/pool-module-options.interface.js';
import { PoolCoreModule } from './pool-core.module.js';
import { DEFAULT_DATASOURCE_NAME } from './pool.constants.js';
import { getConnectionToken, getDatasourceToken, getPoolOptionsToken, getPoolToken } from './pool.utils.js';

/**
 * Registers one datasource per call. Its pool and connection are injectable
 * application-wide (`@InjectPool(name)`, `@InjectConnection(name)`) without
 * importing the module again.
 */
@Module({})
export class PoolModule {
  /**
   * Registers the datasource `options.name` (default `'default'`) with options
   * known up front. The returned module is global; importing it once, in the
   * root module, is enough.
   */
  static forRoot(options: PoolModuleOptions = {}): DynamicModule {
    const name = options.name ?? DEFAULT_DATASOURCE_NAME;
    return this.datasourceModule(name, [{ provide: getPoolOptionsToken(name), useValue: options }]);
  }

  /**
   * Registers the datasource `options.name` (default `'default'`) with options
   * built by a factory, e.g. from `ConfigService`. One of `useFactory`,
   * `useClass` or `useExisting` is required (`useFactory` wins when several
   * are given); without any it throws a `TypeError`.
   */
  static forRootAsync(options: PoolModuleAsyncOptions): DynamicModule {
    const name = options.name ?? DEFAULT_DATASOURCE_NAME;
    return this.datasourceModule(name, this.createAsyncOptionsProviders(name, options), options.imports);
  }

  private static createAsyncOptionsProviders(name: string, options: PoolModuleAsyncOptions): Provider[] {
    const provide = getPoolOptionsToken(name);
    if (options.useFactory) {
      return [{ provide, useFactory: options.useFactory, inject: options.inject ?? [] }];
    }
    const factoryClass = options.useExisting ?? options.useClass;
    if (!factoryClass) {
      throw new TypeError(`PoolModule.forRootAsync() for datasource "${name}" needs useFactory, useClass or useExisting`);
    }
    const fromFactory: Provider = {
      provide,
      useFactory: (factory: PoolOptionsFactory) => factory.createPoolOptions(name),
      inject: [factoryClass],
    };
    return options.useClass ? [fromFactory, { provide: options.useClass, useClass: options.useClass }] : [fromFactory];
  }

  private static datasourceModule(name: string, optionsProviders: Provider[], imports: DynamicModule['imports'] = []): DynamicModule {
    const datasourceToken = getDatasourceToken(name);
    return {
      module: PoolModule,
      global: true,
      imports: [PoolCoreModule, ...imports],
      providers: [
        ...optionsProviders,
        {
          provide: datasourceToken,
          useFactory: (options: PoolModuleOptions, registry: DatasourceRegistry) => registry.create(name, { ...options, name }),
          inject: [getPoolOptionsToken(name), DatasourceRegistry],
        },
        { provide: getPoolToken(name), useFactory: (datasource: Datasource) => datasource.pool, inject: [datasourceToken] },
        {
          provide: getConnectionToken(name),
          useFactory: (datasource: Datasource, registry: DatasourceRegistry) => new PoolConnection(datasource, registry.replicasOf(datasource)),
          inject: [datasourceToken, DatasourceRegistry],
        },
        {
          provide: getConnectionToken(name, { replica: true }),
          useFactory: (datasource: Datasource, registry: DatasourceRegistry) => new PoolConnection(datasource, registry.replicasOf(datasource), true),
          inject: [datasourceToken, DatasourceRegistry],
        },
      ],
      exports: [getPoolToken(name), getConnectionToken(name), getConnectionToken(name, { replica: true }), datasourceToken],
    };
  }
}
