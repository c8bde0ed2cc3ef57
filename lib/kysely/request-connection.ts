import type { CompiledQuery, DatabaseConnection, PostgresCursor, QueryResult } from 'kysely';
import type { QueryResult as PgQueryResult, Submittable } from 'pg';
import type { PoolConnection } from '../pool-connection.js';
import { UnsupportedKyselyFeatureError } from './unsupported-kysely-feature.error.js';

/** Where a connection's statements go: the datasource's `PoolConnection`, or one of the module's transactions. */
export type StatementTarget = Pick<PoolConnection, 'query'>;

/**
 * pg-cursor's `Cursor` class, as `.stream()` uses it: Kysely's
 * `PostgresCursorConstructor`, whose cursors node-postgres also accepts as a query.
 */
export type CursorConstructor = new <T>(sql: string, parameters: unknown[]) => PostgresCursor<T> & Submittable;

// Commands whose row count Kysely reports as numAffectedRows, as its own PostgreSQL driver does.
const AFFECTING = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE']);

/**
 * Kysely's view of "a connection": not a client of its own, but the module's
 * routing. Each statement goes to `target`, which finds the request's client
 * (and its transaction) when the statement runs, so one object serves every
 * request and no client is held between statements.
 */
export class RequestConnection implements DatabaseConnection {
  constructor(
    private readonly target: StatementTarget,
    /** For `.stream()`: the raw client of the running scope or transaction comes from it. */
    private readonly connection: PoolConnection,
    private readonly cursor: CursorConstructor | undefined,
  ) {}

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const result: PgQueryResult = await this.target.query(compiledQuery.sql, compiledQuery.parameters);
    return {
      numAffectedRows: AFFECTING.has(result.command) ? BigInt(result.rowCount ?? 0) : undefined,
      rows: result.rows as R[],
    };
  }

  /**
   * A pg-cursor on the client of the running scope (inside a transaction, the
   * transaction's), as `connection.getClient()` gives it: the module releases
   * that client with its scope, and closes a connection whose cursor was left open.
   */
  async *streamQuery<R>(compiledQuery: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
    if (this.cursor === undefined) {
      throw new UnsupportedKyselyFeatureError('.stream()', "without a cursor class: pass pg-cursor's Cursor as `cursor` to KyselyModule.forRoot()");
    }
    const client = await this.connection.getClient();
    const cursor = client.query(new this.cursor<R>(compiledQuery.sql, [...compiledQuery.parameters]));
    try {
      for (;;) {
        const rows = await cursor.read(chunkSize);
        if (rows.length === 0) return;
        yield { rows };
      }
    } finally {
      await cursor.close();
    }
  }
}
