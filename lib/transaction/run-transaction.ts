import { ConnectionScope } from '../connection/connection-scope.js';
import type { Datasource } from '../datasource/datasource.js';
import { currentTransaction, transactionTurns } from './transaction-context.js';
import { assertJoinable } from './transaction-options.js';
import type { TransactionOptions } from './transaction-options.interface.js';
import { withRetries } from './transaction-retry.js';
import { OpenTransaction, type TransactionWork } from './transaction.js';

/**
 * `connection.transaction()`: a savepoint in the transaction running on
 * `datasource`, or else a transaction on the scope's client (retried as
 * `options.retry` says).
 */
export function runInTransaction<T>(datasource: Datasource, options: TransactionOptions, work: TransactionWork<T>): Promise<T> {
  return inScope(async (scope) => {
    const running = currentTransaction(datasource);
    if (running) {
      assertJoinable(datasource.name, running.settings, options);
      return running.nest(work);
    }
    return withRetries(options.retry, async () => {
      // Asked for on each attempt: a client whose rollback failed was closed and is replaced.
      const lease = await scope.lease(datasource);
      return transactionTurns(lease).take(() => OpenTransaction.runOn(lease, scope, options, work));
    });
  });
}

/** Runs `work` in the current connection scope or, outside any, in one of its own. */
function inScope<T>(work: (scope: ConnectionScope) => Promise<T>): Promise<T> {
  const scope = ConnectionScope.current();
  return scope ? work(scope) : ConnectionScope.run(() => inScope(work));
}
