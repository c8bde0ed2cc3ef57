import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * What the running code's async context holds: the connection scope it
 * belongs to and, inside transactions, the innermost transaction of each
 * datasource. The connection and transaction layers each declare their member
 * here by declaration merging (connection-scope.ts, transaction.ts),
 * so that both depend on this module and neither on the other.
 */
export interface RequestContext {}

// One storage for the scope and the transactions: a query looks its context
// up once, and async hooks copy one store per async resource, not two.
const storage = new AsyncLocalStorage<RequestContext>();

/** The running code's context, if it runs in one. */
export function currentContext(): RequestContext | undefined {
  return storage.getStore();
}

/** Runs `fn` with `context` as the current context. */
export function runInContext<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}
