import { NoopLogger, type Logger, type Query, type RelationalSchemaConfig, type TablesRelationalConfig } from 'drizzle-orm';
import { NoopCache } from 'drizzle-orm/cache/core';
import type { WithCacheConfig } from 'drizzle-orm/cache/core/types';
import { NodePgSession, NodePgTransaction, type NodePgClient, type NodePgSessionOptions } from 'drizzle-orm/node-postgres';
import type { PgDialect, PgPreparedQuery, PreparedQueryConfig } from 'drizzle-orm/pg-core';
import type { SelectedFieldsOrdered } from 'drizzle-orm/pg-core/query-builders/select.types';
import type { PoolConnection } from '../pool-connection.js';
import { TransactionFinishedError } from '../pool.errors.js';
import type { TransactionOptions } from '../transaction/transaction-options.interface.js';
import type { Transaction } from '../transaction/transaction.js';
import { ConnectionClient } from './connection-client.js';
import { ConnectionPreparedQuery } from './connection-prepared-query.js';
import { transactionOptions, type DrizzleTransactionConfig } from './transaction-config.js';

// Drizzle's query cache is not offered: a cached read would skip the request's transaction.
const NO_CACHE = new NoopCache();

type TransactionCallback<TFullSchema extends Record<string, unknown>, TSchema extends TablesRelationalConfig, T> = (
  tx: NodePgTransaction<TFullSchema, TSchema>,
) => Promise<T>;

/**
 * Drizzle's node-postgres session on a `PoolConnection`: its queries run
 * where the connection's would (the request's client, the current
 * transaction), and its transactions are the module's, so that Drizzle,
 * `@Transactional()` and `connection.transaction()` share one transaction
 * and nest as savepoints in it. The database's session has no transaction;
 * each `db.transaction()` gets a session bound to the transaction it opened.
 */
export class ConnectionSession<TFullSchema extends Record<string, unknown>, TSchema extends TablesRelationalConfig> extends NodePgSession<
  TFullSchema,
  TSchema
> {
  private readonly queryClient: NodePgClient;
  private readonly queryLogger: Logger;

  constructor(
    private readonly connection: PoolConnection,
    /** The transaction this session's queries run in; undefined for the database's own session. */
    private readonly running: Transaction | undefined,
    dialect: PgDialect,
    private readonly relations: RelationalSchemaConfig<TSchema> | undefined,
    private readonly sessionOptions: NodePgSessionOptions,
  ) {
    // Drizzle types its client as a pg Pool or Client; it only calls query() on it (see ConnectionClient).
    const client = new ConnectionClient(running ?? connection) as unknown as NodePgClient;
    super(client, dialect, relations, sessionOptions);
    this.queryClient = client;
    this.queryLogger = sessionOptions.logger ?? new NoopLogger();
  }

  /** As NodePgSession's, with the module's errors unwrapped (see ConnectionPreparedQuery). */
  override prepareQuery<T extends PreparedQueryConfig = PreparedQueryConfig>(
    query: Query,
    fields: SelectedFieldsOrdered | undefined,
    name: string | undefined,
    isResponseInArrayMode: boolean,
    customResultMapper?: (rows: unknown[][]) => T['execute'],
    queryMetadata?: { type: 'select' | 'update' | 'delete' | 'insert'; tables: string[] },
    cacheConfig?: WithCacheConfig,
  ): PgPreparedQuery<T> {
    return new ConnectionPreparedQuery<T>(
      this.queryClient,
      query.sql,
      query.params,
      this.queryLogger,
      NO_CACHE,
      queryMetadata,
      cacheConfig,
      fields,
      name,
      isResponseInArrayMode,
      customResultMapper,
    );
  }

  /** `db.transaction()`: `connection.transaction()`, hence a savepoint when a transaction of the datasource runs. */
  override transaction<T>(work: TransactionCallback<TFullSchema, TSchema, T>, config?: DrizzleTransactionConfig): Promise<T> {
    let options: TransactionOptions;
    try {
      options = transactionOptions(config);
    } catch (error) {
      // Refused as connection.transaction() refuses options: in the promise, not thrown at the call.
      return Promise.reject(error);
    }
    return this.connection.transaction((transaction) => work(this.transactionOn(transaction)), options);
  }

  /** `tx.transaction()`: a savepoint in the transaction running where it is called (this session's, inside its callback). */
  nest<T>(work: TransactionCallback<TFullSchema, TSchema, T>): Promise<T> {
    // Once it ended, connection.transaction() would begin a transaction of its own: not what a nested call means.
    if (this.running && !this.running.isActive) {
      return Promise.reject(new TransactionFinishedError(this.running.datasource, 'begin a nested transaction'));
    }
    return this.connection.transaction((transaction) => work(this.transactionOn(transaction)));
  }

  private transactionOn(transaction: Transaction): ConnectionTransaction<TFullSchema, TSchema> {
    const session = new ConnectionSession<TFullSchema, TSchema>(this.connection, transaction, this.dialect, this.relations, this.sessionOptions);
    return new ConnectionTransaction(this.dialect, session, this.relations, transaction.depth);
  }
}

/** The `tx` of `db.transaction()`: its queries run in its transaction, its `transaction()` is a savepoint of the module's. */
export class ConnectionTransaction<TFullSchema extends Record<string, unknown>, TSchema extends TablesRelationalConfig> extends NodePgTransaction<
  TFullSchema,
  TSchema
> {
  constructor(
    dialect: PgDialect,
    private readonly connectionSession: ConnectionSession<TFullSchema, TSchema>,
    relations: RelationalSchemaConfig<TSchema> | undefined,
    depth: number,
  ) {
    super(dialect, connectionSession, relations, depth);
  }

  override transaction<T>(work: TransactionCallback<TFullSchema, TSchema, T>): Promise<T> {
    return this.connectionSession.nest(work);
  }
}
