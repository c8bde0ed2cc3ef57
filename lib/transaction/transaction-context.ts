import { AsyncLocalStorage } from 'node:async_hooks';
import type { ConnectionLease } from '../connection/connection-lease.js';
import { ConnectionScope } from '../connection/connection-scope.js';
import type { Datasource } from '../datasource/datasource.js';
import type { OpenTransaction } from './transaction.js';
import { Turns } from './turns.js';

// The innermost transaction of each datasource the running code is in, so
// that every `@InjectConnection()` query made inside one runs in it.
const storage = new AsyncLocalStorage<ReadonlyMap<Datasource, OpenTransaction>>();

// Transactions on one client of a scope take turns; the scope's other queries wait for them.
const turnsByLease = new WeakMap<ConnectionLease, Turns>();

export function currentTransaction(datasource: Datasource): OpenTransaction | undefined {
  const transaction = storage.getStore()?.get(datasource);
  // A scope opened inside a transaction (ConnectionScope.run) has clients, hence transactions, of its own.
  return transaction?.scope === ConnectionScope.current() ? transaction : undefined;
}

/** Runs `fn` with `transaction` as the current transaction of its datasource. */
export function enterTransaction<T>(transaction: OpenTransaction, fn: () => T): T {
  const transactions = new Map(storage.getStore());
  transactions.set(transaction.lease.datasource, transaction);
  return storage.run(transactions, fn);
}

export function transactionTurns(lease: ConnectionLease): Turns {
  let turns = turnsByLease.get(lease);
  if (!turns) turnsByLease.set(lease, (turns = new Turns()));
  return turns;
}

/** Resolves once no transaction runs on `lease`, so that a query made outside them does not land in one. */
export function outsideTransactions(lease: ConnectionLease): Promise<void> {
  return turnsByLease.get(lease)?.idle() ?? Promise.resolve();
}
