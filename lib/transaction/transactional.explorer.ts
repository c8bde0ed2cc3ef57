import { Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { DatasourceRegistry } from '../datasource/datasource.registry.js';
import { TransactionalDatasourceNotFoundError } from '../pool.errors.js';
import { bindClass, bindInstance } from './transactional-bindings.js';
import { transactionalMethodOf } from './transactional.decorator.js';

/**
 * At bootstrap, finds the `@Transactional()` methods of the application's
 * providers and controllers: fails the bootstrap if one names a datasource
 * that is not registered, and binds the others to this application's
 * datasources.
 */
@Injectable()
export class TransactionalExplorer implements OnModuleInit, OnApplicationShutdown {
  private readonly unbindings: Array<() => void> = [];

  constructor(
    private readonly discovery: DiscoveryService,
    private readonly scanner: MetadataScanner,
    private readonly registry: DatasourceRegistry,
  ) {}

  async onModuleInit(): Promise<void> {
    try {
      this.bindAll();
    } catch (error) {
      // The registry has checked (hence opened) the datasources by now; a failed bootstrap must not leave them open.
      await this.registry.closeAll();
      throw error;
    }
  }

  onApplicationShutdown(): void {
    for (const unbind of this.unbindings.splice(0)) unbind();
  }

  private bindAll(): void {
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      if (wrapper.isDependencyTreeStatic() && !wrapper.isTransient) {
        const instance: unknown = wrapper.instance;
        if (isObject(instance) && this.hasTransactionalMethods(Object.getPrototypeOf(instance) as object | null)) {
          bindInstance(instance, this.registry);
        }
      } else {
        // Request-scoped or transient: its instances do not exist yet.
        const prototype: unknown = wrapper.metatype?.prototype;
        if (isObject(prototype) && this.hasTransactionalMethods(prototype)) {
          this.unbindings.push(bindClass(prototype, this.registry));
        }
      }
    }
  }

  /** Whether `prototype` has `@Transactional()` methods; throws if one names an unknown datasource. */
  private hasTransactionalMethods(prototype: object | null): boolean {
    if (!prototype) return false;
    const known = this.registry.names();
    let found = false;
    for (const name of this.scanner.getAllMethodNames(prototype)) {
      const transactional = transactionalMethodOf((prototype as Record<string, unknown>)[name]);
      if (!transactional) continue;
      if (!known.includes(transactional.datasource)) {
        throw new TransactionalDatasourceNotFoundError(transactional.datasource, known, transactional.method);
      }
      found = true;
    }
    return found;
  }
}

function isObject(value: unknown): value is object {
  return typeof value === 'object' && value !== null;
}
