import type { InjectionToken, ModuleMetadata, OptionalFactoryDependency, Type } from '@nestjs/common';
import type { PoolModuleOptions } from './pool-module-options.interface.js';

/** Options as `forRootAsync` receives them; the datasource name is given beside the factory. */
export type PoolModuleFactoryOptions = Omit<PoolModuleOptions, 'name'>;

/** A class that builds a datasource's options, for `useClass` and `useExisting`. */
export interface PoolOptionsFactory {
  createPoolOptions(name: string): PoolModuleFactoryOptions | Promise<PoolModuleFactoryOptions>;
}

export interface PoolModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  /** Datasource name. Default `'default'`. */
  name?: string;
  useExisting?: Type<PoolOptionsFactory>;
  useClass?: Type<PoolOptionsFactory>;
  useFactory?: (...args: never[]) => PoolModuleFactoryOptions | Promise<PoolModuleFactoryOptions>;
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
}
