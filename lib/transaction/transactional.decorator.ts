import { quietIfCancelled } from '../connection/connection-lease.js';
import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';
import { runWithPropagation } from './run-transaction.js';
import { validateTransactionalOptions } from './transaction-options.js';
import type { TransactionalOptions } from './transaction-options.interface.js';
import { registryOf } from './transactional-bindings.js';

const TRANSACTIONAL_METADATA = 'nestjs-pg-pool:transactional';

/** What the bootstrap check reads from a decorated method. */
export interface TransactionalMethod {
  /** `Class.method`, for messages. */
  readonly method: string;
  readonly datasource: string;
}

/** A method that returns a promise, whatever its parameters: what `@Transactional()` may decorate. */
export type AsyncMethod = (...args: never[]) => Promise<unknown>;

/**
 * What `@Transactional()` returns: a method decorator that only accepts
 * methods returning a promise, so a synchronous method is a compile error.
 */
export type AsyncMethodDecorator = <M extends AsyncMethod>(
  target: object,
  key: string | symbol,
  descriptor: TypedPropertyDescriptor<M>,
) => void;

/**
 * Runs the decorated method in a transaction on the current scope's client
 * (outside a request, in a scope of its own): every `@InjectConnection()`
 * query made while it runs, in any service, runs in that transaction. It
 * commits when the method resolves and rolls back when it throws. Goes on
 * methods returning a promise, of providers and controllers.
 */
export function Transactional(options: TransactionalOptions = {}): AsyncMethodDecorator {
  validateTransactionalOptions(options);
  // A copy, so that changing the object after decoration changes nothing.
  const settings: TransactionalOptions = { ...options, retry: options.retry && { ...options.retry } };
  const datasource = settings.name ?? DEFAULT_DATASOURCE_NAME;
  return (target, key, descriptor) => {
    const method = `${typeof target === 'function' ? target.name : target.constructor.name}.${String(key)}`;
    const original: unknown = descriptor.value;
    if (typeof original !== 'function') throw new TypeError(`@Transactional() goes on methods; ${method} is not one`);
    const run = async (self: unknown, args: unknown[]): Promise<unknown> => {
      const registry = registryOf(self, method);
      return runWithPropagation(registry.get(datasource), settings, method, async () => Reflect.apply(original, self, args) as unknown);
    };
    // Quiet when the module cancelled the work (a hang-up, a deadline): see CancelReason.
    const transactional = function (this: unknown, ...args: unknown[]): Promise<unknown> {
      return quietIfCancelled(run(this, args));
    };
    // Decorators applied before this one (route, guard, pipe metadata) put their metadata on the original function.
    for (const metadataKey of Reflect.getOwnMetadataKeys(original)) {
      Reflect.defineMetadata(metadataKey, Reflect.getOwnMetadata(metadataKey, original), transactional);
    }
    Object.defineProperty(transactional, 'name', { value: original.name });
    Reflect.defineMetadata(TRANSACTIONAL_METADATA, { method, datasource } satisfies TransactionalMethod, transactional);
    descriptor.value = transactional as unknown as typeof descriptor.value;
  };
}

/** What the bootstrap check needs of a method with `@Transactional()`; undefined for other methods. */
export function transactionalMethodOf(fn: unknown): TransactionalMethod | undefined {
  return typeof fn === 'function' ? (Reflect.getOwnMetadata(TRANSACTIONAL_METADATA, fn) as TransactionalMethod | undefined) : undefined;
}
