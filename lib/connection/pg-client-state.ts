import type { ClientBase, DatabaseError, PoolClient } from 'pg';

/**
 * What node-postgres keeps on every client without a public API for it (pg
 * 8.23 neither types nor documents these): what a cancel request needs,
 * whether a query awaits its ReadyForQuery, and the cache of prepared
 * statements. This file alone reads them, each checked before use, with a
 * fallback when missing: no cancel request, no wait for ReadyForQuery, no
 * cache to correct, no reported settings (the caller asks the server
 * instead). test/pg-internals.spec.ts fails when one of them is
 * missing or changes shape on a real client.
 */
interface ClientInternals {
  processID?: unknown;
  /** A number under protocol 3.0; whatever a later node-postgres makes of a longer key otherwise. */
  secretKey?: unknown;
  /** False from sending a query until the server's ReadyForQuery for it. */
  readyForQuery?: unknown;
  connection?: {
    /** Names of the statements node-postgres has prepared on this connection, so it does not parse them again. */
    parsedStatements?: unknown;
    once?: unknown;
    off?: unknown;
    on?: unknown;
  };
}

/** The connection's 'readyForQuery' events, if node-postgres still emits them there. */
interface ReadyForQueryEvents {
  once(event: 'readyForQuery', listener: () => void): unknown;
  off(event: 'readyForQuery', listener: () => void): unknown;
}

/**
 * True when the server reported an open (or failed) transaction on this
 * client: the status of its last ReadyForQuery message ('I' idle, 'T' in a
 * transaction, 'E' in a failed one). `getTransactionStatus()` is why pg's
 * floor is 8.21: older clients do not keep the status at all.
 */
export function isInTransaction(client: PoolClient): boolean {
  const status = client.getTransactionStatus();
  return status === 'T' || status === 'E';
}

/**
 * Calls `then` once the server's ReadyForQuery has come (at once if it has),
 * or the connection ended. node-postgres calls a failed query back on the
 * ErrorResponse, before the ReadyForQuery behind it, which may come in a later
 * read: until then the client's transaction status is the one from before
 * the query, and a client released then looks as if it were still inside
 * (or outside) a transaction.
 */
export function whenReadyForQuery(client: PoolClient, then: () => void): void {
  const internals = client as unknown as ClientInternals;
  const connection = internals.connection;
  if (internals.readyForQuery !== false || !hasReadyForQueryEvents(connection)) return then();
  const ready = (): void => {
    connection.off('readyForQuery', ready);
    client.off('end', ready);
    then();
  };
  // Registered after node-postgres' own listener, which updates the status first.
  connection.once('readyForQuery', ready);
  client.once('end', ready);
}

function hasReadyForQueryEvents(connection: ClientInternals['connection']): connection is ReadyForQueryEvents {
  return typeof connection?.once === 'function' && typeof connection.off === 'function';
}

export interface BackendKey {
  host: string;
  port: number;
  processID: number;
  secretKey: number;
}

/**
 * What a CancelRequest for this client's backend needs, or undefined before
 * the handshake. The address is the client's public `host` and `port` (a
 * Unix socket's directory for a host starting with '/'). node-postgres 8
 * speaks protocol 3.0, under which every server, PostgreSQL 18 included,
 * sends a 4-byte secret key; under protocol 3.2 PostgreSQL 18 sends longer
 * ones, which the 16-byte CancelRequest built here cannot carry: such a key
 * counts as none (no cancel is sent, and a cancelled query's client then
 * waits for the query to end).
 */
export function backendKeyOf(client: PoolClient): BackendKey | undefined {
  const { processID, secretKey } = client as unknown as ClientInternals;
  const { host, port } = client;
  if (typeof host !== 'string' || typeof port !== 'number') return undefined;
  if (!Number.isInteger(processID) || !Number.isInteger(secretKey)) return undefined;
  return { host, port, processID: processID as number, secretKey: secretKey as number };
}

// SQLSTATEs that come with the end of the session: class 08 (connection
// exception) and the operator interventions 57P01-57P05 (admin shutdown,
// crash shutdown, cannot connect now, database dropped, idle session timeout).
const SESSION_ENDING_CODE = /^(08|57P0[1-5])/;

/**
 * True when the server's error ends the session, as FATAL and PANIC errors
 * do: the server closes the connection right after sending it. The code is
 * checked too, as `severity` is translated under a non-English server locale.
 */
export function endsSession(error: DatabaseError): boolean {
  return error.severity === 'FATAL' || error.severity === 'PANIC' || SESSION_ENDING_CODE.test(error.code ?? '');
}

/**
 * Drops from node-postgres' cache the named statements the server no longer
 * has (`DISCARD ALL`, `DEALLOCATE` in a reset): pg would otherwise skip the
 * Parse step and the next use of the name would fail with 26000, "prepared
 * statement does not exist". Asks the server only when the cache is not empty.
 */
export async function forgetDeallocatedStatements(client: PoolClient): Promise<void> {
  const cache = (client as unknown as ClientInternals).connection?.parsedStatements;
  if (typeof cache !== 'object' || cache === null || Object.keys(cache).length === 0) return;
  const { rows } = await client.query<{ name: string }>('SELECT name FROM pg_prepared_statements');
  const prepared = new Set(rows.map((row) => row.name));
  for (const name of Object.keys(cache)) if (!prepared.has(name)) delete (cache as Record<string, unknown>)[name];
}

// The settings the server reported on a client (ParameterStatus), where trackReportedSettings() keeps them.
const REPORTED = Symbol('nestjs-pg-pool:reportedSettings');
type ReportingClient = ClientBase & { [REPORTED]?: Map<string, string> };

/**
 * Keeps, on `client`, the settings its server reports (ParameterStatus
 * messages: at startup, and whenever one changes, e.g. `in_hot_standby` on
 * promotion). node-postgres emits them on `client.connection` as
 * 'parameterStatus' and keeps none. Call it before the client connects.
 * False when the connection has no such events: reportedSetting() then
 * knows nothing.
 */
export function trackReportedSettings(client: ClientBase): boolean {
  const connection = (client as unknown as ClientInternals).connection;
  if (typeof connection?.on !== 'function') return false;
  const settings = new Map<string, string>();
  (client as ReportingClient)[REPORTED] = settings;
  (connection as { on(event: 'parameterStatus', listener: (message: unknown) => void): unknown }).on('parameterStatus', (message) => {
    const { parameterName, parameterValue } = (message ?? {}) as { parameterName?: unknown; parameterValue?: unknown };
    if (typeof parameterName === 'string' && typeof parameterValue === 'string') settings.set(parameterName, parameterValue);
  });
  return true;
}

/** The last value the server reported for `name` on `client` (see trackReportedSettings()); undefined if none was seen. */
export function reportedSetting(client: ClientBase, name: string): string | undefined {
  return (client as ReportingClient)[REPORTED]?.get(name);
}
