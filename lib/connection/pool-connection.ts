import type { PoolClient, QueryConfig, QueryResult, QueryResultRow } from 'pg';
import type { Datasource } from '../datasource/datasource.js';
import { NoConnectionScopeError } from '../pool.errors.js';
import { ConnectionScope } from './connection-scope.js';

/**
 * What `@InjectConnection()` gives: a singleton whose queries run on the
 * client of the current connection scope (one client per request, borrowed
 * on first use, released when the request ends). Outside any scope each
 * query borrows and returns a client of its own, like `pool.query`.
 */
export class PoolConnection {
  constructor(private readonly datasource: Datasource) {}

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
    const scope = ConnectionScope.current();
    if (!scope) return this.datasource.withLease((lease) => lease.query<R>(input, values));
    const lease = await scope.lease(this.datasource);
    return lease.query<R>(input, values);
  }

  /**
   * The scope's own `pg.PoolClient`, for what `query` does not cover (cursors,
   * COPY streams, LISTEN). The module releases it with the scope: never call
   * `release()` on it yourself.
   */
  async getClient(): Promise<PoolClient> {
    const scope = ConnectionScope.current();
    if (!scope) throw new NoConnectionScopeError(this.datasource.name);
    return (await scope.lease(this.datasource)).client;
  }
}
