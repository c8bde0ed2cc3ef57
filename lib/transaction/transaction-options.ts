import { InvalidTransactionOptionsError, TransactionOptionsConflictError } from '../pool.errors.js';
import type {
  IsolationLevel,
  Propagation,
  TransactionalOptions,
  TransactionOptions,
  TransactionRetryOptions,
} from './transaction-options.interface.js';
import { DEFAULT_RETRY_INITIAL_DELAY_MS, DEFAULT_RETRY_MAX_DELAY_MS } from './transaction-retry.js';

// The only text options put into SQL: fixed keywords, looked up, never copied from input.
const ISOLATION_SQL: Record<IsolationLevel, string> = {
  'read uncommitted': 'READ UNCOMMITTED',
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
};

// Strength of each level as PostgreSQL implements it (read uncommitted is read committed).
const ISOLATION_STRENGTH: Record<IsolationLevel, number> = {
  'read uncommitted': 1,
  'read committed': 1,
  'repeatable read': 2,
  serializable: 3,
};

const PROPAGATIONS: readonly Propagation[] = ['required', 'requiresNew', 'nested', 'supports', 'never'];

/** What a running transaction guarantees, checked against the calls that join it or nest in it. */
export interface TransactionSettings {
  readonly isolationLevel: IsolationLevel | undefined;
  readonly readOnly: boolean;
}

export function settingsOf(options: TransactionOptions): TransactionSettings {
  return { isolationLevel: options.isolationLevel, readOnly: options.readOnly ?? false };
}

/** Throws `InvalidTransactionOptionsError` for anything TypeScript would have refused. */
export function validateTransactionOptions(options: TransactionOptions): void {
  if (typeof options !== 'object' || options === null) fail('options', 'must be an object');
  const { isolationLevel, readOnly, deferrable, retry } = options;
  if (isolationLevel !== undefined && !Object.hasOwn(ISOLATION_SQL, isolationLevel)) {
    fail('isolationLevel', `must be one of ${quoted(Object.keys(ISOLATION_SQL))}, got ${JSON.stringify(isolationLevel)}`);
  }
  for (const [option, value] of [['readOnly', readOnly], ['deferrable', deferrable]] as const) {
    if (value !== undefined && typeof value !== 'boolean') fail(option, `must be a boolean, got ${JSON.stringify(value)}`);
  }
  if (retry !== undefined) validateRetry(retry);
}

export function validateTransactionalOptions(options: TransactionalOptions): void {
  validateTransactionOptions(options);
  const { name, propagation } = options;
  if (name !== undefined && (typeof name !== 'string' || name.trim() === '')) {
    fail('name', `must be a non-empty string, got ${JSON.stringify(name)}`);
  }
  if (propagation !== undefined && !PROPAGATIONS.includes(propagation)) {
    fail('propagation', `must be one of ${quoted(PROPAGATIONS)}, got ${JSON.stringify(propagation)}`);
  }
}

function validateRetry(retry: TransactionRetryOptions): void {
  if (typeof retry !== 'object' || retry === null) fail('retry', 'must be an object such as { maxRetries: 3 }');
  const { maxRetries, initialDelayMs = DEFAULT_RETRY_INITIAL_DELAY_MS, maxDelayMs = DEFAULT_RETRY_MAX_DELAY_MS } = retry;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) {
    fail('retry.maxRetries', `must be an integer of at least 0, got ${String(maxRetries)}`);
  }
  for (const [option, value] of [['retry.initialDelayMs', initialDelayMs], ['retry.maxDelayMs', maxDelayMs]] as const) {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      fail(option, `must be a number of at least 0, got ${String(value)}`);
    }
  }
  if (initialDelayMs > maxDelayMs) fail('retry.initialDelayMs', `(${initialDelayMs}) must not exceed retry.maxDelayMs (${maxDelayMs})`);
}

/** `BEGIN` with the transaction modes the options ask for. */
export function beginStatement({ isolationLevel, readOnly, deferrable }: TransactionOptions): string {
  const modes: string[] = [];
  if (isolationLevel !== undefined) modes.push(`ISOLATION LEVEL ${ISOLATION_SQL[isolationLevel]}`);
  if (readOnly !== undefined) modes.push(readOnly ? 'READ ONLY' : 'READ WRITE');
  if (deferrable !== undefined) modes.push(deferrable ? 'DEFERRABLE' : 'NOT DEFERRABLE');
  return modes.length ? `BEGIN ${modes.join(', ')}` : 'BEGIN';
}

/**
 * A call that joins or nests in a running transaction takes it as it is; it
 * may not silently get a weaker isolation level, or write where it may not.
 */
export function assertJoinable(datasource: string, running: TransactionSettings, requested: TransactionOptions): void {
  const wanted = requested.isolationLevel;
  // Unset means the server default, which PostgreSQL ships as read committed.
  const runs = running.isolationLevel ?? 'read committed';
  if (wanted !== undefined && ISOLATION_STRENGTH[wanted] > ISOLATION_STRENGTH[runs]) {
    throw new TransactionOptionsConflictError(
      datasource,
      'isolationLevel',
      `the call asks for isolation level "${wanted}" but the transaction runs at ` +
        `${running.isolationLevel ? `"${runs}"` : 'the server default (read committed)'}; ` +
        `begin the outer transaction with isolationLevel "${wanted}"`,
    );
  }
  if (requested.readOnly === false && running.readOnly) {
    throw new TransactionOptionsConflictError(datasource, 'readOnly', 'the call asks to write but the transaction is read only');
  }
}

function fail(option: string, reason: string): never {
  throw new InvalidTransactionOptionsError(option, reason);
}

function quoted(values: readonly string[]): string {
  return values.map((value) => `"${value}"`).join(', ');
}
