import { Module, type DynamicModule } from '@nestjs/common';
import type { PoolConnection } from '../pool-connection.js';
import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';
import { getConnectionToken } from '../pool.utils.js';
import { createDrizzle, type DrizzleOptions } from './create-drizzle.js';
import { getDrizzleToken } from './drizzle.tokens.js';

/** Options of `DrizzleModule.forRoot()`. */
export interface DrizzleModuleOptions<TSchema extends Record<string, unknown> = Record<string, never>> extends DrizzleOptions<TSchema> {
  /** The datasource, registered with `PoolModule.forRoot()` under this name. Default `'default'`. */
  name?: string;
}

/**
 * Registers one Drizzle database per call, on a datasource of `PoolModule`,
 * injectable application-wide with `@InjectDrizzle(name)`.
 */
@Module({})
export class DrizzleModule {
  /**
   * Registers the Drizzle database of datasource `options.name` (default
   * `'default'`): one instance, created at bootstrap, on the datasource's
   * `PoolConnection`, and its twin on the connection that reads from
   * replicas (`@InjectDrizzle(name, { replica: true })`). The returned module is global.
   */
  static forRoot<TSchema extends Record<string, unknown> = Record<string, never>>(options: DrizzleModuleOptions<TSchema> = {}): DynamicModule {
    const { name = DEFAULT_DATASOURCE_NAME, ...drizzleOptions } = options;
    // Two databases, as there are two connections: the primary's, and the one whose reads go to replicas.
    const providers = [{}, { replica: true }].map((routing) => ({
      provide: getDrizzleToken(name, routing),
      useFactory: (connection: PoolConnection) => createDrizzle(connection, drizzleOptions),
      inject: [getConnectionToken(name, routing)],
    }));
    return { module: DrizzleModule, global: true, providers, exports: providers.map(({ provide }) => provide) };
  }
}
