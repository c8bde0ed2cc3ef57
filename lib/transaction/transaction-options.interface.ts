/** Isolation levels PostgreSQL accepts (it runs `read uncommitted` as `read committed`). */
export type IsolationLevel = 'read uncommitted' | 'read committed' | 'repeatable read' | 'serializable';

/**
 * Automatic re-run of a whole transaction that failed with a serialization
 * failure (SQLSTATE 40001) or a deadlock (40P01). Only for work that is safe
 * to run again: everything it does outside the database is repeated too.
 */
export interface TransactionRetryOptions {
  /** How many more times the transaction may run after the first failure. An integer of at least 0. */
  maxRetries: number;
  /** Wait before the first retry, doubled before each next one (with jitter). Default 20 ms. */
  initialDelayMs?: number;
  /** Upper bound of one wait. Default 500 ms. */
  maxDelayMs?: number;
}

/** Options of `connection.transaction()`. They apply to a call that begins a transaction. */
export interface TransactionOptions {
  /** Default: the server's `default_transaction_isolation` (normally `read committed`). */
  isolationLevel?: IsolationLevel;
  /** `READ ONLY` (true) or `READ WRITE` (false). Default: the server's default (read write). */
  readOnly?: boolean;
  /** `DEFERRABLE`; PostgreSQL honours it for `serializable` read-only transactions only. */
  deferrable?: boolean;
  /** Off unless given. */
  retry?: TransactionRetryOptions;
}

/**
 * How a `@Transactional()` method relates to a transaction already running
 * on its datasource:
 * - `required` (default): joins it, or begins one if none runs;
 * - `requiresNew`: begins its own on a separate client, committed or rolled back on its own;
 * - `nested`: a savepoint in it, or a transaction if none runs;
 * - `supports`: joins it, or runs without a transaction;
 * - `never`: throws `TransactionPropagationError` if one runs.
 */
export type Propagation = 'required' | 'requiresNew' | 'nested' | 'supports' | 'never';

/** Options of `@Transactional()`. */
export interface TransactionalOptions extends TransactionOptions {
  /** Datasource name. Default `'default'`. */
  name?: string;
  /** Default `'required'`. */
  propagation?: Propagation;
}
