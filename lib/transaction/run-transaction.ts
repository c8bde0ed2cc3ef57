import { ConnectionScope } from '../connection/connection-scope.js';
import type { Datasource } from '../datasource/datasource.js';
import { PoolUnavailableError, TransactionPropagationError } from '../pool.errors.js';
import { assertJoinable } from './transaction-options.js';
import type { TransactionalOptions, TransactionOptions } from './transaction-options.interface.js';
import { withRetries } from './transaction-retry.js';
import { CommittedHooks } from './after-commit.js';
import { currentTransaction, OpenTransaction, transactionTurns, type TransactionWork } from './transaction.js';

/**
 * `connection.transaction()`: a savepoint in the transaction running on
 * `datasource`, or else a transaction on the scope's client (retried as
 * `options.retry` says).
 */
export function runInTransaction<T>(datasource: Datasource, options: TransactionOptions, work: TransactionWork<T>): Promise<T> {
  return inScope(datasource, async () => {
    const running = currentTransaction(datasource);
    if (running) {
      assertJoinable(datasource.name, running.settings, options);
      return running.nest(work);
    }
    // Each attempt in the scope as it is then: one that ended meanwhile (its
    // client hung up) gives its retries a scope of their own, or refuses them.
    return withRetries(options.retry, () => inScope(datasource, (scope) => attempt(datasource, scope, options, work))).catch(tellWhenToRetry);
  });
}

/**
 * A transaction that failed for want of a working connection, after the
 * one run again it may have had: its HTTP request is told when to retry (see
 * ConnectionScope.clientRefused()), which its queries do not do themselves
 * inside a transaction, as one that runs again may still succeed.
 */
function tellWhenToRetry(error: unknown): never {
  if (error instanceof PoolUnavailableError) ConnectionScope.current()?.clientRefused(error);
  throw error;
}

/** One attempt of a transaction on `scope`'s client of `datasource`. */
async function attempt<T>(datasource: Datasource, scope: ConnectionScope, options: TransactionOptions, work: TransactionWork<T>): Promise<T> {
  // Asked for on each attempt: a client whose rollback failed was closed and is replaced.
  const lease = await scope.lease(datasource);
  // The scope ended while its client was on its way, which went back: the attempt goes where work after the end goes.
  if (lease.isReleased) return inScope(datasource, (next) => attempt(datasource, next, options, work));
  const committed = new CommittedHooks();
  let result: T;
  try {
    result = await transactionTurns(lease).take(() => OpenTransaction.runOn(datasource, lease, scope, options, work, committed));
  } finally {
    scope.transactionEnded(datasource);
  }
  // Once the transaction's turn has ended: the hooks' queries would otherwise wait for it.
  await committed.run((message) => datasource.warn(message));
  return result;
}

/** `@Transactional()`: relates the call to the transaction running on `datasource` as its propagation says. */
export function runWithPropagation<T>(
  datasource: Datasource,
  options: TransactionalOptions,
  method: string,
  work: () => Promise<T>,
): Promise<T> {
  return inScope(datasource, async () => {
    const running = currentTransaction(datasource);
    switch (options.propagation ?? 'required') {
      case 'required':
        return running ? join(running, options, work) : runInTransaction(datasource, options, work);
      case 'nested':
        return runInTransaction(datasource, options, work);
      case 'requiresNew':
        return runInSeparateTransaction(datasource, options, work);
      case 'supports':
        return running ? join(running, options, work) : work();
      case 'never':
        if (running) throw new TransactionPropagationError(datasource.name, method);
        return work();
    }
  });
}

/** A transaction on a client of its own, released when the transaction ends. */
function runInSeparateTransaction<T>(datasource: Datasource, options: TransactionOptions, work: () => Promise<T>): Promise<T> {
  return inScope(datasource, (scope) =>
    withRetries(options.retry, async () => {
      const committed = new CommittedHooks();
      const result = await datasource.withLease((lease) => {
        scope.prepare(lease);
        return OpenTransaction.runOn(datasource, lease, scope, options, work, committed);
      });
      // Its client is back in the pool by now.
      await committed.run((message) => datasource.warn(message));
      return result;
    }).catch(
      tellWhenToRetry,
    ),
  );
}

async function join<T>(running: OpenTransaction, options: TransactionOptions, work: () => Promise<T>): Promise<T> {
  assertJoinable(running.datasource, running.settings, options);
  try {
    return await work();
  } catch (error) {
    running.markRollbackOnly();
    throw error;
  }
}

/**
 * Runs `work` in the current connection scope or, outside any or after its
 * end, in one of its own (unless work of `datasource` after the end is
 * refused: see ConnectionScope.refuseAfterEnd()).
 */
function inScope<T>(datasource: Datasource, work: (scope: ConnectionScope) => Promise<T>): Promise<T> {
  const scope = ConnectionScope.current();
  if (scope !== undefined && !scope.isClosed) return work(scope);
  return scope?.refuseAfterEnd(datasource) ?? ConnectionScope.run(() => inScope(datasource, work));
}
