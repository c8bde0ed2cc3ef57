import { textOf, type QueryInput } from '../connection/query-input.js';
import { SESSION_ADVISORY_LOCK, SESSION_SET_CONFIG } from '../connection/session-state.js';
import { SessionStateError } from '../pool.errors.js';

/**
 * Statements that need a server session of their own. Behind a pooler in
 * transaction mode (PgBouncer `pool_mode = transaction`) consecutive
 * transactions of one client may run on different server connections, so
 * these would either be lost or leak into other clients' sessions. Matched on
 * the statement text: a guard against the common mistakes, not a parser.
 */
const SESSION_STATEMENTS: ReadonlyArray<readonly [RegExp, string]> = [
  [
    /^\s*(SET|RESET)\s+(?!LOCAL\b|TRANSACTION\b|CONSTRAINTS\b)/i,
    'SET/RESET changes the server session, which other clients share; use SET LOCAL inside a transaction',
  ],
  [
    SESSION_SET_CONFIG,
    'set_config(…, false) changes the server session, which other clients share; use setRequestSettings(), or set_config(…, true) inside a transaction',
  ],
  [/^\s*LISTEN\b/i, 'LISTEN needs a session of its own; listen on a direct connection to the server'],
  [SESSION_ADVISORY_LOCK, 'a session advisory lock outlives the transaction; use pg_advisory_xact_lock'],
  [/^\s*(PREPARE|DEALLOCATE)\b/i, 'prepared statements live in a server session'],
];

/** Why a transaction-mode pooler cannot keep what `input` does, if it cannot: a `SessionStateError`. */
export function transactionPoolingRefusal(datasource: string, input: QueryInput): SessionStateError | undefined {
  if (typeof input !== 'string' && input.name) {
    return new SessionStateError(datasource, `named prepared statement "${input.name}"`, 'prepared statements live in a server session');
  }
  const text = textOf(input);
  for (const [pattern, why] of SESSION_STATEMENTS) {
    if (pattern.test(text)) return new SessionStateError(datasource, abbreviate(text), why);
  }
  return undefined;
}

function abbreviate(text: string): string {
  const line = text.trim().replace(/\s+/g, ' ');
  return line.length > 60 ? `${line.slice(0, 57)}...` : line;
}
