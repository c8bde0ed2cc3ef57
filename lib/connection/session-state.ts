// What undoes each kind of session state; several run as one statement text before the client goes back.
// RESET ALL leaves the role alone: SET SESSION AUTHORIZATION DEFAULT resets it (any role may run it).
/** Undoes settings and the role, whoever set them (the holder, or the request's settings: see session-settings.ts). */
export const RESET_SETTINGS = 'SET SESSION AUTHORIZATION DEFAULT; RESET ALL';
/** Undoes PREPARE; node-postgres' cache of the statements it prepared must then be told (see forgetDeallocatedStatements()). */
export const DEALLOCATE_ALL = 'DEALLOCATE ALL';
const UNLISTEN = 'UNLISTEN *';
const CLOSE_CURSORS = 'CLOSE ALL';
const DROP_TEMPORARY = 'DISCARD TEMP';
const UNLOCK_ADVISORY = 'SELECT pg_advisory_unlock_all()';

const NONE: readonly string[] = [];
const SETTINGS: readonly string[] = [RESET_SETTINGS];
const LOCKS: readonly string[] = [UNLOCK_ADVISORY];
const SETTINGS_AND_LOCKS: readonly string[] = [RESET_SETTINGS, UNLOCK_ADVISORY];
const TEMPORARY_OBJECTS: readonly string[] = [DROP_TEMPORARY];
const BY_COMMAND = new Map<string, readonly string[]>([
  ['LISTEN', [UNLISTEN]],
  ['PREPARE', [DEALLOCATE_ALL]],
  ['DECLARE', [CLOSE_CURSORS]],
]);

// A SET that ends with its transaction, alone in its text.
const TRANSACTION_SCOPED_SET = /^\s*SET\s+(LOCAL|TRANSACTION|CONSTRAINTS)\b[^;]*;?\s*$/i;
// A SELECT's tag cannot tell; its text can, for the functions users call to change the session.
const MAY_CHANGE_SESSION = /set_config|advisory_lock/i;
// set_config(name, value, is_local) but for a literal `true` as is_local (a transaction's own setting).
export const SESSION_SET_CONFIG = /\bset_config\s*\((?![^)]*,\s*true\s*\))/i;
/** A session advisory lock taken (not a transaction's, `pg_advisory_xact_lock`): it outlives the transaction. */
export const SESSION_ADVISORY_LOCK = /\bpg_(try_)?advisory_lock(_shared)?\s*\(/i;
const TEMPORARY = /\bTEMP(ORARY)?\b/i;

/**
 * The statements that undo what a statement with this command tag and text
 * left on the server session, so that the next borrower of the connection
 * does not inherit it: settings and the role (`SET`, `RESET`,
 * `set_config(…, false)`), `LISTEN`, `PREPARE`, cursors (`DECLARE … WITH
 * HOLD`), temporary tables and session advisory locks. Empty for most
 * statements. What runs inside a function or a `DO` block is not seen:
 * `resetOnRelease` covers that. Of several statements in one text, each
 * is judged by its own tag and the whole text.
 */
export function sessionResets(command: string, text: string | undefined): readonly string[] {
  switch (command) {
    case 'SELECT': {
      if (text === undefined || !MAY_CHANGE_SESSION.test(text)) return NONE;
      const settings = SESSION_SET_CONFIG.test(text);
      const locks = SESSION_ADVISORY_LOCK.test(text);
      return settings ? (locks ? SETTINGS_AND_LOCKS : SETTINGS) : locks ? LOCKS : NONE;
    }
    case 'SET':
    case 'RESET':
      return text !== undefined && TRANSACTION_SCOPED_SET.test(text) ? NONE : SETTINGS;
    case 'CREATE':
      return text === undefined || TEMPORARY.test(text) ? TEMPORARY_OBJECTS : NONE;
    default:
      return BY_COMMAND.get(command) ?? NONE;
  }
}
