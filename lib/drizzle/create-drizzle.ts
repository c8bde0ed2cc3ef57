import {
  createTableRelationsHelpers,
  DefaultLogger,
  extractTablesRelationalConfig,
  type Casing,
  type ExtractTablesWithRelations,
  type Logger,
  type RelationalSchemaConfig,
} from 'drizzle-orm';
import { NodePgDatabase, type NodePgTransaction } from 'drizzle-orm/node-postgres';
import { PgDialect } from 'drizzle-orm/pg-core';
import type { PoolConnection } from '../pool-connection.js';
import { ConnectionSession } from './connection-session.js';
import type { DrizzleTransactionConfig } from './transaction-config.js';

/** Drizzle's settings for a database on a datasource. */
export interface DrizzleOptions<TSchema extends Record<string, unknown> = Record<string, never>> {
  /** The tables and relations (a schema module imported as a namespace), for `db.query.<table>` and typed results. */
  schema?: TSchema;
  /** `true` logs each query with Drizzle's `DefaultLogger`; or a logger of your own. */
  logger?: boolean | Logger;
  /** How Drizzle names columns declared without a name (`'snake_case'` or `'camelCase'`). */
  casing?: Casing;
}

/** The `tx` of `db.transaction()`: a Drizzle database whose queries run in that transaction. */
export type DrizzleTransaction<TSchema extends Record<string, unknown> = Record<string, never>> = NodePgTransaction<
  TSchema,
  ExtractTablesWithRelations<TSchema>
>;

/**
 * A Drizzle node-postgres database whose queries run where the datasource's
 * `PoolConnection` runs them, and whose transactions are the module's.
 */
export interface DrizzleDatabase<TSchema extends Record<string, unknown> = Record<string, never>> extends NodePgDatabase<TSchema> {
  /** The connection its queries go through. */
  $client: PoolConnection;
  /**
   * Runs `work` in `connection.transaction()`: a transaction (with `config`'s
   * isolation level, access mode and retries), or a savepoint when one of the
   * datasource already runs (`@Transactional()`, `connection.transaction()`,
   * another `db.transaction()`). Commits when `work` resolves; rolls back and
   * rethrows when it throws (`tx.rollback()` throws).
   */
  transaction<T>(work: (tx: DrizzleTransaction<TSchema>) => Promise<T>, config?: DrizzleTransactionConfig): Promise<T>;
}

/**
 * A Drizzle database on `connection`. One per datasource is enough, and
 * what `DrizzleModule` registers: every query finds the request's client and
 * transaction when it runs.
 */
export function createDrizzle<TSchema extends Record<string, unknown> = Record<string, never>>(
  connection: PoolConnection,
  options: DrizzleOptions<TSchema> = {},
): DrizzleDatabase<TSchema> {
  // What Drizzle's own drizzle() does, with the module's session in place of NodePgSession.
  const dialect = new PgDialect({ casing: options.casing });
  const relations = options.schema && relationalConfig(options.schema);
  const logger = options.logger === true ? new DefaultLogger() : options.logger || undefined;
  const session = new ConnectionSession(connection, undefined, dialect, relations, { logger });
  const db = new NodePgDatabase<TSchema>(dialect, session, relations) as DrizzleDatabase<TSchema>;
  db.$client = connection;
  return db;
}

function relationalConfig<TSchema extends Record<string, unknown>>(schema: TSchema): RelationalSchemaConfig<ExtractTablesWithRelations<TSchema>> {
  const { tables, tableNamesMap } = extractTablesRelationalConfig<ExtractTablesWithRelations<TSchema>>(schema, createTableRelationsHelpers);
  return { fullSchema: schema, schema: tables, tableNamesMap };
}
