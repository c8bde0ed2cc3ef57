import pg, { type QueryConfig } from 'pg';
import { textOf, type QueryInput } from './query-input.js';

/** The statement that sets a request's settings on the session: the module's own, so not taken for the holder changing its session. */
export class SettingsStatement implements QueryConfig<string[]> {
  constructor(
    readonly text: string,
    readonly values: string[],
  ) {}
}

/**
 * Settings a request gives every connection it uses (`setRequestSettings()`):
 * custom ones such as `app.tenant_id`, which row-level security policies
 * read with `current_setting()`, and optionally the role its statements run
 * as. Made once per call; the statements that apply them are built here.
 */
export class SessionSettings {
  /** For the session: one statement, its values bound (no text made from input). */
  readonly forSession: SettingsStatement;
  /** For the transaction it runs in (see forTransaction), made when first asked for: only behind a transaction-mode pooler. */
  private transactionStatement: string | undefined = undefined;

  constructor(
    /** Setting name to value, `role` last (the other settings are set by the connection's own user). */
    readonly values: ReadonlyMap<string, string>,
  ) {
    const calls: string[] = [];
    const bound: string[] = [];
    for (const [name, value] of values) {
      calls.push(`set_config($${bound.length + 1}, $${bound.length + 2}, false)`);
      bound.push(name, value);
    }
    this.forSession = new SettingsStatement(`SELECT ${calls.join(', ')}`, bound);
  }

  /** For the transaction it runs in: with literals, so that it can share one simple query with its BEGIN. */
  get forTransaction(): string {
    this.transactionStatement ??= `SELECT ${[...this.values].map(([name, value]) => `set_config(${pg.escapeLiteral(name)}, ${pg.escapeLiteral(value)}, true)`).join(', ')}`;
    return this.transactionStatement;
  }

  /** These settings with `later`'s added, a value `later` names replacing this one's; the role stays last. */
  merged(later: ReadonlyMap<string, string>): SessionSettings {
    const values = new Map([...this.values, ...later]);
    const role = values.get('role');
    if (role !== undefined) {
      values.delete('role');
      values.set('role', role);
    }
    return new SessionSettings(values);
  }
}

// One statement that opens a transaction, alone in its text (a BEGIN the settings can follow in the same simple query).
const OPENS_TRANSACTION = /^\s*(BEGIN|START\s+TRANSACTION)\b[^;]*;?\s*$/i;
// Statements that end or work inside a transaction, and those PostgreSQL refuses inside one: never wrapped in one.
const NOT_WRAPPED = /^\s*(COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION|VACUUM|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM)\b|\bCONCURRENTLY\b/i;

/**
 * How a statement carries a request's settings where each transaction may
 * run on another server connection (a transaction-mode pooler): a BEGIN
 * sent as a plain text gets them in the same simple query (`'append'`),
 * another statement outside a transaction runs in one of its own that sets
 * them first (`'wrap'`); statements that end a transaction, or that cannot
 * run inside one (`VACUUM`, `… CONCURRENTLY`), run as they are (`'none'`).
 */
export function carryingSettings(input: QueryInput): 'append' | 'wrap' | 'none' {
  const text = textOf(input);
  if (OPENS_TRANSACTION.test(text)) return 'append';
  return NOT_WRAPPED.test(text) ? 'none' : 'wrap';
}

/** `begin` (a BEGIN alone in its text) followed by the settings, for one simple query. */
export function beginWithSettings(begin: string, settings: SessionSettings): string {
  return `${begin.trim().replace(/;$/, '')}; ${settings.forTransaction}`;
}
