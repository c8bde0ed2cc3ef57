import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { Datasource } from '../datasource/datasource.js';
import { NoConnectionScopeError } from '../pool.errors.js';
import { runInTransaction } from '../transaction/run-transaction.js';
import { currentTransaction, outsideTransactions } from '../transaction/transaction-context.js';
import { validateTransactionOptions } from '../transaction/transaction-options.js';
import type { TransactionOptions } from '../transaction/transaction-options.interface.js';
import type { Transaction } from '../transaction/transaction.js';
import { isReadStatement, prefersReplica } from '../replication/read-routing.js';
import { queryReplica } from '../replication/query-replica.js';
import type { QueryInput } from './connection-lease.js';
import { ConnectionScope } from './connection-scope.js';
import { isInTransaction } from './pg-client-state.js';

/**
 * What `@InjectConnection()` gives: a singleton whose queries run on the
 * client of the current connection scope (one client per request, borrowed
 * on first use, released when the request ends), inside the current
 * transaction if one runs. Outside any scope each query borrows and returns
 * a client of its own, like `pool.query`.
 */
export class PoolConnection {
  constructor(
    private readonly datasource: Datasource,
    /** Reads go to a replica when the datasource has one (`@InjectConnection(name, { replica: true })`). */
    private readonly readsFromReplica = false,
  ) {}

  /** Name of the datasource this connection belongs to. */
  get name(): string {
    return this.datasource.name;
  }

  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>>;
  query<R extends QueryResultRow = QueryResultRow>(config: QueryConfig<unknown[]>): Promise<QueryResult<R>>;
  async query<R extends QueryResultRow>(
    input: string | QueryConfig<unknown[]>,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    const transaction = currentTransaction(this.datasource);
    if (transaction) return transaction.query<R>(input, values);
    const scope = ConnectionScope.current();
    const replicas = this.datasource.replicas;
    if (replicas && this.mayReadFromReplica(input, scope)) {
      const result = await queryReplica<R>(replicas, scope, input, values);
      if (result) return result;
    }
    if (!scope) return this.datasource.withLease((lease) => lease.query<R>(input, values));
    const lease = await scope.lease(this.datasource);
    await outsideTransactions(lease);
    return lease.query<R>(input, values);
  }

  /**
   * A replica may answer a read statement when this connection or the running
   * method (`@ReadFromReplica()`) asks for it, and the request has neither a
   * transaction open on the primary nor a write there to read back.
   */
  private mayReadFromReplica(input: QueryInput, scope: ConnectionScope | undefined): boolean {
    if (!(this.readsFromReplica || prefersReplica()) || !isReadStatement(input)) return false;
    const primary = scope?.heldLease(this.datasource);
    return !primary || (!primary.wrote && !isInTransaction(primary.client));
  }

  /**
   * The scope's own `pg.PoolClient` (inside a transaction, the transaction's),
   * for what `query` does not cover (cursors, COPY streams, LISTEN). The
   * module releases it with the scope: never call `release()` on it yourself.
   */
  async getClient(): Promise<PoolClient> {
    const transaction = currentTransaction(this.datasource);
    if (transaction) return transaction.activeClient();
    const scope = ConnectionScope.current();
    if (!scope) throw new NoConnectionScopeError(this.datasource.name);
    return (await scope.lease(this.datasource)).client;
  }

  /**
   * Runs `work` in a transaction on the scope's client (outside any scope, in
   * a scope of its own): commits when it resolves, rolls back and rethrows
   * when it throws. Called inside a transaction, runs `work` in a savepoint.
   */
  async transaction<T>(work: (transaction: Transaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    validateTransactionOptions(options);
    return runInTransaction(this.datasource, options, work);
  }
}
