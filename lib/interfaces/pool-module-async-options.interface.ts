import type { InjectionToken, ModuleMetadata, OptionalFactoryDependency, Type } from '@nestjs/common';
import type { PoolModuleOptions } from './pool-module-options.interface.js';

/** Options as `forRootAsync` receives them; the datasource name is given beside the factory. */
export type PoolModuleFactoryOptions = Omit<PoolModuleOptions, 'name'>;

/** A class that builds a datasource's options, for `useClass` and `useExisting`. */
export interface PoolOptionsFactory {
  /** Builds the options of the datasource called `name` (the `name` given to `forRootAsync`), so one factory can serve several. */
  createPoolOptions(name: string): PoolModuleFactoryOptions | Promise<PoolModuleFactoryOptions>;
}

/**
 * Options of `PoolModule.forRootAsync`: the datasource's name, and how to build
 * the rest of its options once their dependencies can be injected. `imports`
 * lists the modules those dependencies come from.
 */
export interface PoolModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  /** Datasource name. Default `'default'`. */
  name?: string;
  /** An existing `PoolOptionsFactory` provider (from a module in `imports`, or a global one), reused rather than created. */
  useExisting?: Type<PoolOptionsFactory>;
  /** A `PoolOptionsFactory` class, which the module instantiates with its dependencies injected. */
  useClass?: Type<PoolOptionsFactory>;
  /** Builds the options from the providers listed in `inject`, in that order; may be async. */
  useFactory?: (...args: never[]) => PoolModuleFactoryOptions | Promise<PoolModuleFactoryOptions>;
  /** Providers passed to `useFactory` as its arguments. Default: none. */
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
}
