import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { PoolModuleOptions } from '../../lib/index.js';

/**
 * Connection settings of the machine's PostgreSQL: DATABASE_URL when set,
 * otherwise the PG* variables, otherwise 127.0.0.1:5432 as `postgres`.
 */
export function serverConfig(database?: string): PoolModuleOptions {
  const url = process.env.DATABASE_URL;
  if (url) {
    if (!database) return { connectionString: url };
    const withDatabase = new URL(url);
    withDatabase.pathname = `/${database}`;
    return { connectionString: withDatabase.toString() };
  }
  return {
    host: process.env.PGHOST ?? '127.0.0.1',
    port: Number(process.env.PGPORT ?? 5432),
    user: process.env.PGUSER ?? 'postgres',
    ...(process.env.PGPASSWORD ? { password: process.env.PGPASSWORD } : {}),
    database: database ?? process.env.PGDATABASE ?? 'postgres',
  };
}

/** The password the tests were given for the server (DATABASE_URL's or PGPASSWORD), if any. */
export function serverPassword(): string | undefined {
  const url = process.env.DATABASE_URL;
  if (url) return decodeURIComponent(new URL(url).password) || undefined;
  return process.env.PGPASSWORD || undefined;
}

/** Runs one statement on the server's maintenance database. */
export function adminQuery<R extends pg.QueryResultRow = pg.QueryResultRow>(
  text: string,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  return queryOnce(serverConfig(), text, values);
}

/** Runs one statement on a connection of its own to `config`, outside any pool under test. */
export async function queryOnce<R extends pg.QueryResultRow>(
  config: PoolModuleOptions,
  text: string,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    return await client.query<R>(text, values);
  } finally {
    await client.end();
  }
}

// #region create-test-database
export interface TestDatabase {
  readonly name: string;
  readonly options: PoolModuleOptions;
  /** Runs one statement in this database on a connection of its own. */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
  drop(): Promise<void>;
}

/** A fresh database for one suite, dropped (with any connection left to it) by `drop()`. */
export async function createTestDatabase(label: string): Promise<TestDatabase> {
  const name = `npp_${label}_${randomBytes(4).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${name}`);
  const options = serverConfig(name);
  return {
    name,
    options,
    query: (text, values) => queryOnce(options, text, values),
    drop: async () => {
      await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}
// #endregion create-test-database

/** Backends connected to `database`, by state, as pg_stat_activity reports them. */
export async function backendStates(database: string): Promise<Array<{ pid: number; state: string | null; query: string }>> {
  const { rows } = await adminQuery<{ pid: number; state: string | null; query: string }>(
    'SELECT pid, state, query FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
    [database],
  );
  return rows;
}

/** Waits until backend `pid` of `database` is running a query whose text contains `fragment`. */
export async function waitForRunningQuery(database: string, pid: number, fragment: string): Promise<void> {
  await waitFor(
    async () => (await backendStates(database)).find((b) => b.pid === pid && b.state === 'active' && b.query.includes(fragment)),
    `${fragment} to run on backend ${pid}`,
  );
}

/**
 * Backends of one application (told apart by application_name), by state, in the database of
 * `database` (its connection options): a second run of the suite at once, on the same server,
 * uses the same application names in databases of its own.
 */
export async function applicationBackends(
  applicationName: string,
  database: PoolModuleOptions,
): Promise<Array<{ pid: number; state: string | null }>> {
  const { rows } = await queryOnce<{ pid: number; state: string | null }>(
    database,
    'SELECT pid, state FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database()',
    [applicationName],
  );
  return rows;
}

/**
 * Polls `check` until it returns a value, for server-side states no event announces. The default
 * bound is for a loaded machine (CI runs suites side by side), below Jest's 30 s per test so that
 * what was awaited is named.
 */
export async function waitFor<T>(check: () => Promise<T | undefined>, what: string, timeoutMs = 25_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
