import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import { quietIfCancelled, type ConnectionLease } from './connection/connection-lease.js';
import type { ConnectionScope } from './connection/connection-scope.js';
import { isInTransaction } from './connection/pg-client-state.js';
import type { QueryInput } from './connection/query-input.js';
import { currentContext } from './context/request-context.js';
import type { Datasource } from './datasource/datasource.js';
import { ConnectionScopeClosedError, NoConnectionScopeError } from './pool.errors.js';
import { queryReplica } from './replication/query-replica.js';
import { isReadStatement, prefersReplica } from './replication/read-routing.js';
import type { ReplicaSet } from './replication/replica-set.js';
import { runInTransaction } from './transaction/run-transaction.js';
import { validateTransactionOptions } from './transaction/transaction-options.js';
import type { TransactionOptions } from './transaction/transaction-options.interface.js';
import type { Transaction } from './transaction/transaction.js';

// A client that came after its scope ended went back at once: it is not the caller's to use.
function clientOf(lease: ConnectionLease): PoolClient {
  if (lease.isReleased) throw new ConnectionScopeClosedError(lease.policy.name);
  return lease.rawClient();
}

/**
 * What `@InjectConnection()` gives: a singleton whose queries run on the
 * client of the current connection scope (one client per request, borrowed
 * on first use, released when the request ends), inside the current
 * transaction if one runs. Outside any scope each query borrows and returns
 * a client of its own, like `pool.query`.
 */
export class PoolConnection {
  /** @internal The module creates the connections; inject them with `@InjectConnection()`. */
  constructor(
    private readonly datasource: Datasource,
    /** Where reads may go instead, when the datasource has replicas. */
    private readonly replicas: ReplicaSet | undefined,
    /** Reads go to a replica when the datasource has one (`@InjectConnection(name, { replica: true })`). */
    private readonly readsFromReplica = false,
  ) {}

  /** Name of the datasource this connection belongs to. */
  get name(): string {
    return this.datasource.name;
  }

  /**
   * Runs `text`, with `values` bound to `$1`, `$2`, …, on the current scope's
   * client (in its transaction, if one runs) or, outside any scope, on a client
   * borrowed for this query alone. A read may go to a replica where asked for
   * (`{ replica: true }`, `@ReadFromReplica()`).
   */
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>>;
  /**
   * Runs a node-postgres query config (`text`, `values`, and `name` for a
   * prepared statement, `types` for custom parsers), routed as a plain text is.
   */
  query<R extends QueryResultRow = QueryResultRow>(config: QueryConfig<unknown[]>): Promise<QueryResult<R>>;
  query<R extends QueryResultRow>(input: string | QueryConfig<unknown[]>, values?: readonly unknown[]): Promise<QueryResult<R>> {
    // Not async: each layer returns the promise of the one below, so a query
    // costs no promise of the module's own once the scope has its client.
    const context = currentContext();
    const transaction = context?.transactions?.get(this.datasource);
    if (transaction !== undefined) return transaction.query<R>(input, values);
    const replicas = this.replicas;
    if (replicas !== undefined && this.mayReadFromReplica(input, context?.scope)) {
      return quietIfCancelled(this.readFromReplica<R>(replicas, context?.scope, input, values));
    }
    if (context === undefined) return this.datasource.query<R>(input, values);
    return context.scope.query<R>(this.datasource, input, values);
  }

  /** A read on a replica, or on the primary when none answers. */
  private async readFromReplica<R extends QueryResultRow>(
    replicas: ReplicaSet,
    scope: ConnectionScope | undefined,
    input: QueryInput,
    values: readonly unknown[] | undefined,
  ): Promise<QueryResult<R>> {
    let open = scope;
    if (scope?.isClosed) {
      // After its scope ended, a read runs as one outside any scope, unless refused (see refuseAfterEnd()).
      const refused = scope.refuseAfterEnd(this.datasource);
      if (refused) return refused;
      open = undefined;
    }
    const result = await queryReplica<R>(replicas, open, input, values);
    if (result) return result;
    return open ? open.query<R>(this.datasource, input, values) : this.datasource.query<R>(input, values);
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
   * module releases it with the scope; `release()` ends the request's hold
   * early (`release(err)` or `release(true)` closes the connection) and later
   * calls do nothing. Listeners added to it and LISTEN registrations end
   * with the hold; a cursor or COPY still open then closes the connection.
   */
  getClient(): Promise<PoolClient> {
    const context = currentContext();
    if (context === undefined) return Promise.reject(new NoConnectionScopeError(this.datasource.name));
    const transaction = context.transactions?.get(this.datasource);
    if (transaction !== undefined) {
      try {
        return Promise.resolve(transaction.activeClient());
      } catch (error) {
        return Promise.reject(error);
      }
    }
    return context.scope.lease(this.datasource).then(clientOf);
  }

  /**
   * Runs `work` in a transaction on the scope's client (outside any scope, in
   * a scope of its own): commits when it resolves, rolls back and rethrows
   * when it throws. Called inside a transaction, runs `work` in a savepoint.
   */
  transaction<T>(work: (transaction: Transaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    return quietIfCancelled(this.runTransaction(work, options));
  }

  private async runTransaction<T>(work: (transaction: Transaction) => Promise<T>, options: TransactionOptions): Promise<T> {
    validateTransactionOptions(options);
    return runInTransaction(this.datasource, options, work);
  }
}
