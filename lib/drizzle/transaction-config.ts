import type { PgTransactionConfig } from 'drizzle-orm/pg-core';
import { InvalidTransactionOptionsError } from '../pool.errors.js';
import type { TransactionOptions, TransactionRetryOptions } from '../transaction/transaction-options.interface.js';

/**
 * Drizzle's transaction config (`isolationLevel`, `accessMode`, `deferrable`),
 * with the module's `retry`. Like `connection.transaction()`'s options, it
 * applies to a call that begins a transaction; a call that runs as a
 * savepoint checks it against the running transaction.
 */
export interface DrizzleTransactionConfig extends PgTransactionConfig {
  /** Runs the whole callback again after a serialization failure or a deadlock, as `connection.transaction()` does. */
  retry?: TransactionRetryOptions;
}

const ACCESS_MODES: ReadonlyArray<PgTransactionConfig['accessMode']> = ['read only', 'read write', undefined];

/** The module's options for Drizzle's config; the module validates the rest. */
export function transactionOptions(config: DrizzleTransactionConfig | undefined): TransactionOptions {
  if (config === undefined) return {};
  const { isolationLevel, accessMode, deferrable, retry } = config;
  if (!ACCESS_MODES.includes(accessMode)) {
    throw new InvalidTransactionOptionsError('accessMode', `must be "read only" or "read write", got ${JSON.stringify(accessMode)}`);
  }
  return { isolationLevel, readOnly: accessMode === undefined ? undefined : accessMode === 'read only', deferrable, retry };
}
