import type { ConnectionLease } from '../connection/connection-lease.js';
import { ConnectionScope, type ScopeContext } from '../connection/connection-scope.js';
import type { Datasource } from '../datasource/datasource.js';
import type { OpenTransaction } from './transaction.js';
import { Turns } from './turns.js';

// The innermost transaction of each datasource the running code is in rides
// on the connection scope's own AsyncLocalStorage (see ScopeContext), so
// that every `@InjectConnection()` query made inside one runs in it.

export function currentTransaction(datasource: Datasource): OpenTransaction | undefined {
  // A scope opened inside a transaction (ConnectionScope.run) is a context of
  // its own, without the transactions: it has clients, hence transactions, of its own.
  return ConnectionScope.context()?.transactions?.get(datasource);
}

/** Runs `fn` with `transaction` as the current transaction of its datasource. */
export function enterTransaction<T>(transaction: OpenTransaction, fn: () => T): T {
  const context = ConnectionScope.context();
  // Transactions of another scope (the code left it since) are not this scope's.
  const transactions = new Map(context?.scope === transaction.scope ? context.transactions : undefined);
  transactions.set(transaction.lease.datasource, transaction);
  const frame: ScopeContext = { scope: transaction.scope, transactions };
  return ConnectionScope.enter(frame, fn);
}

/** Transactions on one client of a scope take turns; the scope's other queries wait for them. */
export function transactionTurns(lease: ConnectionLease): Turns {
  return (lease.transactionTurns ??= new Turns());
}
