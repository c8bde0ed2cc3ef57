import type { QueryConfig, QueryResult } from 'pg';

/** What a Drizzle query can run on: the datasource's `PoolConnection`, or a transaction the module opened. */
export interface QueryTarget {
  query(config: QueryConfig<unknown[]>): Promise<QueryResult>;
}

/**
 * The client Drizzle's node-postgres session is given. Drizzle calls nothing
 * on it but `query(config, values)` (its `transaction()` is replaced, see
 * ConnectionSession), so it takes the place of a `pg.Client` and hands each
 * query to where `@InjectConnection()` would run it. Its class name must not
 * contain "Pool": Drizzle would take it for a pool and call `connect()`.
 */
export class ConnectionClient {
  constructor(private readonly target: QueryTarget) {}

  /** Drizzle's config (`text`, `name`, `types`, `rowMode`) with its parameters, as node-postgres takes them. */
  query(config: QueryConfig<unknown[]>, values?: unknown[]): Promise<QueryResult> {
    // A copy: node-postgres would write the values into Drizzle's config, which a prepared query reuses.
    return this.target.query(values === undefined ? config : { ...config, values });
  }
}
