import type { LoggerService } from '@nestjs/common';
import { connect } from 'node:net';
import pg from 'pg';
import type { SampleConfig } from '../config.js';
import { EmbeddedPostgres } from './embedded-postgres.js';

/** Database of the default datasource on a local server found by the probe. */
const SAMPLE_DATABASE = 'nestjs_pg_pool_sample';
const PROBE_TIMEOUT_MS = 1000;

export interface SampleDatabases {
  /** Connection URL of the default datasource. */
  readonly default: string;
  /** Connection URL of the `audit` datasource. */
  readonly audit: string;
  /** The embedded database, when neither DATABASE_URL nor a local server was there. */
  readonly embedded?: EmbeddedPostgres;
}

/**
 * Picks the databases: DATABASE_URL when set; otherwise the server at
 * `localPostgres` if it answers; otherwise an embedded PostgreSQL. The audit
 * database, unless given, sits beside the default one and is created if missing.
 */
export async function resolveDatabases(config: SampleConfig, logger: LoggerService): Promise<SampleDatabases> {
  if (config.databaseUrl) {
    logger.log(`Using DATABASE_URL (${describeDatabase(config.databaseUrl)})`);
    return withAuditDatabase(config.databaseUrl, config.auditDatabaseUrl, logger);
  }

  const { host, port } = config.localPostgres;
  if (await isListening(host, port)) {
    const server = `postgres://postgres@${host}:${port}/postgres`;
    logger.log(`No DATABASE_URL: using the PostgreSQL server on ${host}:${port}`);
    await ensureDatabase(server, SAMPLE_DATABASE, logger);
    return withAuditDatabase(withDatabase(server, SAMPLE_DATABASE), config.auditDatabaseUrl, logger);
  }

  const embedded = await EmbeddedPostgres.start();
  logger.log(
    `No DATABASE_URL and no PostgreSQL on ${host}:${port}: started an embedded PostgreSQL ${embedded.version} ` +
      `on ${embedded.host}:${embedded.port} (scram-sha-256, a temporary folder removed on exit)`,
  );
  try {
    await ensureDatabase(embedded.url(), SAMPLE_DATABASE, logger);
    return { ...(await withAuditDatabase(embedded.url(SAMPLE_DATABASE), config.auditDatabaseUrl, logger)), embedded };
  } catch (error) {
    await embedded.stop();
    throw error;
  }
}

async function withAuditDatabase(defaultUrl: string, auditUrl: string | undefined, logger: LoggerService): Promise<SampleDatabases> {
  if (auditUrl) return { default: defaultUrl, audit: auditUrl };
  const name = `${new URL(defaultUrl).pathname.slice(1) || 'postgres'}_audit`;
  await ensureDatabase(defaultUrl, name, logger);
  return { default: defaultUrl, audit: withDatabase(defaultUrl, name) };
}

/** Creates database `name` on the server of `url` unless it exists. */
async function ensureDatabase(url: string, name: string, logger: LoggerService): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount) return;
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
    logger.log(`Created database "${name}"`);
  } catch (error) {
    // Another instance created it between our check and our CREATE.
    if ((error as { code?: unknown }).code !== '42P04') throw error;
  } finally {
    await client.end();
  }
}

/** `host:port/database`: no user, no password. */
function describeDatabase(url: string): string {
  const { hostname, port, pathname } = new URL(url);
  return `${hostname}:${port || 5432}${pathname}`;
}

function withDatabase(url: string, database: string): string {
  const withName = new URL(url);
  withName.pathname = `/${database}`;
  return withName.toString();
}

/** True when something accepts TCP connections at host:port. */
function isListening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: PROBE_TIMEOUT_MS });
    const answer = (listening: boolean) => (): void => {
      socket.destroy();
      resolve(listening);
    };
    socket.once('connect', answer(true));
    socket.once('timeout', answer(false));
    socket.once('error', answer(false));
  });
}
