import type pg from 'pg';
import { reportedSetting } from '../connection/pg-client-state.js';
import type { TargetSessionAttrs } from '../interfaces/pool-module-options.interface.js';

/** What a session's server is, as `targetSessionAttrs` judges it. */
export interface SessionRole {
  /** The server is a hot standby (in recovery). */
  readonly hotStandby: boolean;
  /** Transactions are read-only by default (`default_transaction_read_only`). */
  readonly readOnly: boolean;
}

// Asked only of a server that did not report both settings at startup (before PostgreSQL 14).
const ROLE_QUERY = "SELECT pg_is_in_recovery() AS hot_standby, current_setting('default_transaction_read_only') AS read_only";

/**
 * The role as the server last reported it (PostgreSQL 14 and later report
 * `in_hot_standby` and `default_transaction_read_only` at startup and on each
 * change); undefined when it did not report both.
 */
export function reportedRole(client: pg.ClientBase): SessionRole | undefined {
  const hotStandby = reportedSetting(client, 'in_hot_standby');
  const readOnly = reportedSetting(client, 'default_transaction_read_only');
  if (hotStandby === undefined || readOnly === undefined) return undefined;
  return { hotStandby: hotStandby === 'on', readOnly: readOnly === 'on' };
}

/** The role of a connected client's server: as reported, without a round trip, or else asked for. */
export async function sessionRoleOf(client: pg.ClientBase): Promise<SessionRole> {
  const reported = reportedRole(client);
  if (reported) return reported;
  const { rows } = await client.query<{ hot_standby: boolean; read_only: string }>(ROLE_QUERY);
  return { hotStandby: rows[0].hot_standby, readOnly: rows[0].read_only === 'on' };
}

/**
 * Whether a server of `role` is what `target` asks for, as libpq judges it.
 * `prefer-standby` asks for a standby here; the caller falls back to any.
 */
export function matchesTarget(target: TargetSessionAttrs, role: SessionRole): boolean {
  switch (target) {
    case 'any':
      return true;
    case 'read-write':
      return !role.hotStandby && !role.readOnly;
    case 'read-only':
      return role.hotStandby || role.readOnly;
    case 'primary':
      return !role.hotStandby;
    case 'standby':
    case 'prefer-standby':
      return role.hotStandby;
  }
}

/** The role in words, for logs and errors. */
export function describeRole(role: SessionRole): string {
  if (role.hotStandby) return 'a hot standby';
  return role.readOnly ? 'a primary, read-only by default' : 'a read-write primary';
}
