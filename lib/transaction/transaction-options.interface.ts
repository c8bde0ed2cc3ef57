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
