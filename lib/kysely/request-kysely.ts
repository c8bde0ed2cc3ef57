import {
  ConnectionBuilder,
  Kysely,
  Transaction,
  TransactionBuilder,
  WithSchemaPlugin,
  validateTransactionSettings,
  type AccessMode,
  type ConnectionProvider,
  type DatabaseConnection,
  type DrainOuterGeneric,
  type IsolationLevel,
  type KyselyPlugin,
  type KyselyProps,
  type QueryExecutor,
  type TransactionSettings,
} from 'kysely';
import { ConnectionScope } from '../connection/connection-scope.js';
import type { PoolConnection } from '../pool-connection.js';
import { InvalidTransactionOptionsError } from '../pool.errors.js';
import type { TransactionOptions } from '../transaction/transaction-options.interface.js';
import type { Transaction as ModuleTransaction } from '../transaction/transaction.js';
import { RequestConnection, type CursorConstructor } from './request-connection.js';

/** What a datasource's Kysely and the copies made of it (`withPlugin()`, `withSchema()`, …) share. */
export interface RequestBinding {
  /** Kysely's compiler, adapter, driver and executor (with this copy's plugins). */
  readonly props: KyselyProps;
  readonly connection: PoolConnection;
  readonly cursor: CursorConstructor | undefined;
}

/** Hands every consumer the same connection: the module, not Kysely, decides which client a statement runs on. */
export class FixedConnectionProvider implements ConnectionProvider {
  constructor(private readonly connection: DatabaseConnection) {}

  provideConnection<T>(consumer: (connection: DatabaseConnection) => Promise<T>): Promise<T> {
    return consumer(this.connection);
  }
}

/**
 * The `Kysely<DB>` a datasource gets: Kysely's own query building and
 * execution, with `transaction()` and `connection()` replaced so that they
 * use the module's transactions and scopes. Each copy Kysely makes of itself
 * is made of this class again, so no copy falls back to Kysely's own begin
 * and commit.
 */
export class RequestKysely<DB> extends Kysely<DB> {
  constructor(private readonly binding: RequestBinding) {
    super(binding.props);
  }

  override transaction(): TransactionBuilder<DB> {
    return new ModuleTransactionBuilder<DB>(this.binding, {});
  }

  override connection(): ConnectionBuilder<DB> {
    return new ScopeConnectionBuilder<DB>(this.binding.props, this);
  }

  override withPlugin(plugin: KyselyPlugin): Kysely<DB> {
    return this.withExecutor(this.binding.props.executor.withPlugin(plugin));
  }

  override withoutPlugins(): Kysely<DB> {
    return this.withExecutor(this.binding.props.executor.withoutPlugins());
  }

  override withSchema(schema: string): Kysely<DB> {
    return this.withExecutor(this.binding.props.executor.withPluginAtFront(new WithSchemaPlugin(schema)));
  }

  override $extendTables<T extends Record<string, Record<string, unknown>>>(): Kysely<DrainOuterGeneric<DB & T>> {
    return new RequestKysely(this.binding);
  }

  override $omitTables<T extends keyof DB>(): Kysely<DB extends object ? Omit<DB, T> : DB> {
    return new RequestKysely(this.binding);
  }

  override $pickTables<T extends keyof DB>(): Kysely<DB extends object ? Pick<DB, T> : DB> {
    return new RequestKysely(this.binding);
  }

  private withExecutor(executor: QueryExecutor): Kysely<DB> {
    return new RequestKysely({ ...this.binding, props: { ...this.binding.props, executor } });
  }
}

/**
 * `db.transaction().execute(fn)` as `connection.transaction()`.
 *
 * Kysely's own builder begins, runs `fn` and commits through separate driver
 * calls; the module's transaction is a callback found through
 * AsyncLocalStorage, and a driver call cannot put `fn` inside that callback's
 * async context. So the builder is replaced instead of the driver's begin:
 * `fn` runs inside `connection.transaction()`, hence `@InjectConnection()`
 * queries and `@Transactional()` methods called from it join the transaction,
 * and one opened inside another transaction (a `@Transactional()` method, a
 * `connection.transaction()`, another `db.transaction()`) is a savepoint of
 * it. The `trx` given to `fn` sends its statements to that module
 * transaction object itself, not to whatever runs where it is used: after
 * `fn` ended it throws `TransactionFinishedError` rather than run outside.
 */
class ModuleTransactionBuilder<DB> extends TransactionBuilder<DB> {
  constructor(
    private readonly binding: RequestBinding,
    private readonly settings: TransactionSettings,
  ) {
    super(binding.props);
  }

  override setAccessMode(accessMode: AccessMode): TransactionBuilder<DB> {
    return new ModuleTransactionBuilder<DB>(this.binding, { ...this.settings, accessMode });
  }

  override setIsolationLevel(isolationLevel: IsolationLevel): TransactionBuilder<DB> {
    return new ModuleTransactionBuilder<DB>(this.binding, { ...this.settings, isolationLevel });
  }

  override async execute<T>(callback: (trx: Transaction<DB>) => Promise<T>): Promise<T> {
    const options = transactionOptionsOf(this.settings);
    return this.binding.connection.transaction((transaction) => callback(transactionKysely<DB>(this.binding, transaction)), options);
  }
}

/** Kysely's `Transaction<DB>` whose statements run in `transaction`. */
function transactionKysely<DB>(binding: RequestBinding, transaction: ModuleTransaction): Transaction<DB> {
  const connection = new RequestConnection(transaction, binding.connection, binding.cursor);
  return new Transaction<DB>({ ...binding.props, executor: binding.props.executor.withConnectionProvider(new FixedConnectionProvider(connection)) });
}

function transactionOptionsOf({ isolationLevel, accessMode }: TransactionSettings): TransactionOptions {
  validateTransactionSettings({ isolationLevel, accessMode });
  if (isolationLevel === 'snapshot') throw new InvalidTransactionOptionsError('isolationLevel', 'PostgreSQL has no "snapshot" isolation level');
  return { isolationLevel, readOnly: accessMode === undefined ? undefined : accessMode === 'read only' };
}

/**
 * `db.connection().execute(fn)`: Kysely promises `fn` one connection. Inside
 * a scope (a request, a transaction) every statement already runs on the
 * scope's client; outside any, `fn` gets a scope of its own for that.
 */
class ScopeConnectionBuilder<DB> extends ConnectionBuilder<DB> {
  constructor(
    props: KyselyProps,
    private readonly db: Kysely<DB>,
  ) {
    super(props);
  }

  override async execute<T>(callback: (db: Kysely<DB>) => Promise<T>): Promise<T> {
    if (ConnectionScope.current() !== undefined) return callback(this.db);
    return ConnectionScope.run(() => callback(this.db));
  }
}
