import { ConnectionScope } from '../connection/connection-scope.js';
import { InvalidRequestSettingsError, NoConnectionScopeError } from '../pool.errors.js';

/** What `setRequestSettings()` takes besides the settings. */
export interface RequestSettingsOptions {
  /**
   * The role the request's statements run as, as `SET ROLE` sets it: one
   * the connection's user is a member of. Row-level security applies to it
   * unless it owns the table or has `BYPASSRLS`.
   */
  role?: string;
}

// A setting's name as PostgreSQL takes it: a built-in one, or a custom one with a prefix (`app.tenant_id`).
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)*$/;
// Set through `role`, so that one way says which role a request runs as.
const ROLE_SETTINGS = new Set(['role', 'session_authorization']);

/**
 * Gives every query of the running request, on every datasource and every
 * client it uses, these settings (and `options.role`), as
 * `set_config(name, value, …)` would: call it from a guard or an
 * interceptor once the caller is known, e.g. `{ 'app.tenant_id': tenant }`
 * for row-level security policies that read
 * `current_setting('app.tenant_id', true)`. The module sets them on each
 * client before the request's first query there and resets them before the
 * client goes to anyone else; behind a transaction-mode pooler
 * (`transactionPooling`) it sets them inside each transaction instead. A
 * later call adds to them: the values it names (and its role) replace the
 * earlier ones, from the next statement on. Work that outlives the request is refused
 * rather than run without them; work in a `ConnectionScope.run()` called
 * inside the request takes them along.
 *
 * @throws InvalidRequestSettingsError for a name that is no setting's, a value that is no string, or a call inside a transaction.
 * @throws NoConnectionScopeError outside a request (or `ConnectionScope.run()`).
 */
export function setRequestSettings(settings: Readonly<Record<string, string>>, options: RequestSettingsOptions = {}): void {
  const validated = validateSettings(settings, options);
  const scope = ConnectionScope.current();
  if (scope === undefined) throw new NoConnectionScopeError(undefined, 'setRequestSettings()');
  // Set on the session inside a transaction, they would be undone by its rollback, and its statements so far ran without them.
  if (scope.inTransaction) throw new InvalidRequestSettingsError('setRequestSettings() was called inside a transaction; call it before the request begins one');
  scope.setSettings(validated);
}

function validateSettings(settings: Readonly<Record<string, string>>, options: RequestSettingsOptions): Map<string, string> {
  if (typeof settings !== 'object' || settings === null) throw new InvalidRequestSettingsError(`expected an object of settings, got ${String(settings)}`);
  const validated = new Map<string, string>();
  for (const [name, value] of Object.entries(settings)) {
    if (!SETTING_NAME.test(name)) throw new InvalidRequestSettingsError(`"${name}" is not the name of a setting (e.g. app.tenant_id)`);
    if (ROLE_SETTINGS.has(name.toLowerCase())) throw new InvalidRequestSettingsError(`"${name}" is set with the role option`);
    validated.set(name, validValue(name, value));
  }
  const { role } = options;
  if (role !== undefined) {
    if (role === '') throw new InvalidRequestSettingsError('the role is empty');
    // Last: the other settings are set by the connection's own user.
    validated.set('role', validValue('role', role));
  }
  if (validated.size === 0) throw new InvalidRequestSettingsError('no setting and no role given');
  return validated;
}

function validValue(name: string, value: unknown): string {
  if (typeof value !== 'string') throw new InvalidRequestSettingsError(`the value of "${name}" must be a string, got ${value === null ? 'null' : typeof value}`);
  // PostgreSQL's text cannot hold a zero byte.
  if (value.includes('\0')) throw new InvalidRequestSettingsError(`the value of "${name}" contains a zero byte`);
  return value;
}
