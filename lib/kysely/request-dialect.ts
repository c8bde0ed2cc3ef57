import {
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  type Kysely,
  type QueryCompiler,
} from 'kysely';
import { UnsupportedKyselyFeatureError } from './unsupported-kysely-feature.error.js';

const CONTROLLED_ADVICE =
  "its begin and commit are separate calls, which cannot carry the module's transaction to the code in between; " +
  'use db.transaction().execute(), connection.transaction() or a @Transactional() method';

/**
 * Kysely's PostgreSQL compiler, adapter and introspector over a driver whose
 * one connection is the module's routing (see RequestConnection): the module
 * owns the pool, Kysely only compiles and maps results.
 */
export class RequestDialect implements Dialect {
  constructor(private readonly connection: DatabaseConnection) {}

  createDriver(): Driver {
    return new RequestDriver(this.connection);
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createIntrospector(db: Kysely<unknown>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}

/**
 * Acquiring and releasing cost nothing: the request's scope holds its client.
 * Transactions never come here from `db.transaction()` (see RequestKysely);
 * only a controlled transaction (`db.startTransaction()`) does, and is refused
 * at its BEGIN, before anything ran.
 */
class RequestDriver implements Driver {
  constructor(private readonly connection: DatabaseConnection) {}

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return this.connection;
  }

  beginTransaction(): Promise<void> {
    return refuseControlledTransaction();
  }

  commitTransaction(): Promise<void> {
    return refuseControlledTransaction();
  }

  rollbackTransaction(): Promise<void> {
    return refuseControlledTransaction();
  }

  async releaseConnection(): Promise<void> {}

  /** The module closes its pools on shutdown; `db.destroy()` has nothing of its own to close. */
  async destroy(): Promise<void> {}
}

function refuseControlledTransaction(): Promise<void> {
  return Promise.reject(new UnsupportedKyselyFeatureError('db.startTransaction()', CONTROLLED_ADVICE));
}
