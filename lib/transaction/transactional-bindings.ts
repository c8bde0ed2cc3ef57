import type { DatasourceRegistry } from '../datasource/datasource.registry.js';
import { TransactionalNotBoundError } from '../pool.errors.js';

// A `@Transactional()` method finds its datasources through the object it
// runs on, so that applications sharing a process never see each other's.

// Singleton providers and controllers, each created by one application.
const registryByInstance = new WeakMap<object, DatasourceRegistry>();
// Classes of request-scoped and transient providers (instances come later), with the applications that may create them.
const registriesByClass = new WeakMap<object, Set<DatasourceRegistry>>();

export function bindInstance(instance: object, registry: DatasourceRegistry): void {
  registryByInstance.set(instance, registry);
}

/** Binds the future instances of the class of `prototype`; returns the unbinding, for shutdown. */
export function bindClass(prototype: object, registry: DatasourceRegistry): () => void {
  let registries = registriesByClass.get(prototype);
  if (!registries) registriesByClass.set(prototype, (registries = new Set()));
  registries.add(registry);
  return () => registries.delete(registry);
}

/** The datasources of the application that created `instance`, the `this` of `method`. */
export function registryOf(instance: unknown, method: string): DatasourceRegistry {
  if (typeof instance !== 'object' || instance === null) throw new TransactionalNotBoundError(method, false);
  const registry = registryByInstance.get(instance);
  if (registry) return registry;
  const [only, ...others] = registriesByClass.get(Object.getPrototypeOf(instance) as object) ?? [];
  if (only && others.length === 0) return only;
  throw new TransactionalNotBoundError(method, others.length > 0);
}
