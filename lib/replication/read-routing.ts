import { AsyncLocalStorage } from 'node:async_hooks';
import { textOf, type QueryInput } from '../connection/query-input.js';

// Statements a hot standby can answer. A locking SELECT (FOR UPDATE/SHARE)
// needs the primary; so does anything else, including a WITH that may write.
const READ_STATEMENT = /^\s*\(?\s*(SELECT|SHOW|VALUES|TABLE|EXPLAIN)\b/i;
const LOCKING_READ = /\bFOR\s+(NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b/i;

/** True when the statement only reads, so a replica may answer it. */
export function isReadStatement(input: QueryInput): boolean {
  const text = textOf(input);
  return READ_STATEMENT.test(text) && !LOCKING_READ.test(text);
}

// Commands (as the server reports them) after which a request must keep
// reading from the primary to see its own writes.
const READ_COMMANDS = new Set(['SELECT', 'SHOW', 'EXPLAIN', 'BEGIN', 'COMMIT', 'ROLLBACK', 'SET']);

/** True when a finished statement may have written (the server's command tag says so). */
export function mayHaveWritten(command: string | null | undefined): boolean {
  return !!command && !READ_COMMANDS.has(command);
}

const readFromReplica = new AsyncLocalStorage<true>();

/** True inside a method marked with `@ReadFromReplica()`. */
export function prefersReplica(): boolean {
  return readFromReplica.getStore() === true;
}

/**
 * Marks a handler or service method whose reads may go to a replica: while it
 * runs, read statements on datasources that have replicas go to one, unless
 * a transaction is open or the request already wrote (read-your-writes).
 */
export function ReadFromReplica(): MethodDecorator {
  return (_target, _key, descriptor) => {
    const method = descriptor.value as unknown as (...args: unknown[]) => unknown;
    const wrapped = function (this: unknown, ...args: unknown[]): unknown {
      return readFromReplica.run(true, () => method.apply(this, args));
    };
    // Nest reads route, guard and parameter metadata from the function itself.
    for (const key of Reflect.getMetadataKeys(method)) {
      Reflect.defineMetadata(key, Reflect.getMetadata(key, method), wrapped);
    }
    Object.defineProperty(wrapped, 'name', { value: method.name });
    descriptor.value = wrapped as typeof descriptor.value;
    return descriptor;
  };
}
