import { Module, type DynamicModule } from '@nestjs/common';
import type { PoolConnection } from '../pool-connection.js';
import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';
import { getConnectionToken } from '../pool.utils.js';
import { createKysely, type KyselyOptions } from './create-kysely.js';
import { getKyselyToken } from './kysely.tokens.js';

/** Options of `KyselyModule.forRoot()`. */
export interface KyselyModuleOptions extends KyselyOptions {
  /** The datasource (a `PoolModule.forRoot()`'s `name`) whose connection the Kysely runs on. Default `'default'`. */
  name?: string;
}

/**
 * Registers the `Kysely` of one datasource per call, injectable
 * application-wide with `@InjectKysely(name)`: one instance, whose statements
 * run on the current request's connection (see `createKysely()`).
 */
@Module({})
export class KyselyModule {
  /** Registers the Kysely of datasource `options.name` (default `'default'`); the returned module is global. */
  static forRoot(options: KyselyModuleOptions = {}): DynamicModule {
    const name = options.name ?? DEFAULT_DATASOURCE_NAME;
    const token = getKyselyToken(name);
    return {
      module: KyselyModule,
      global: true,
      providers: [{ provide: token, useFactory: (connection: PoolConnection) => createKysely(connection, options), inject: [getConnectionToken(name)] }],
      exports: [token],
    };
  }
}
