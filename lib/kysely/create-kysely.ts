import { DefaultQueryExecutor, type Kysely, type KyselyPlugin, type KyselyProps } from 'kysely';
import type { PoolConnection } from '../pool-connection.js';
import { RequestConnection, type CursorConstructor } from './request-connection.js';
import { RequestDialect } from './request-dialect.js';
import { FixedConnectionProvider, RequestKysely } from './request-kysely.js';

/** How a datasource's Kysely is built. */
export interface KyselyOptions {
  /** Kysely plugins (e.g. `CamelCasePlugin`), applied to every query of this Kysely. */
  plugins?: readonly KyselyPlugin[];
  /**
   * pg-cursor's `Cursor` class, for `.stream()` (as Kysely's `PostgresDialect`
   * takes it). Without it, `.stream()` throws `UnsupportedKyselyFeatureError`.
   */
  cursor?: CursorConstructor;
}

/**
 * A `Kysely<DB>` whose every statement runs where `connection`'s queries
 * would: on the current request's client, in its transaction if one runs,
 * on a client of its own outside any request. Its `transaction()` is the
 * module's (see docs/kysely.md). `KyselyModule.forRoot()` makes one per
 * datasource; build one yourself for a provider factory of your own or a
 * script, once per connection: it holds no client, so one serves every request.
 */
export function createKysely<DB>(connection: PoolConnection, options: KyselyOptions = {}): Kysely<DB> {
  const plugins = [...(options.plugins ?? [])];
  const root = new RequestConnection(connection, connection, options.cursor);
  const dialect = new RequestDialect(root);
  // Kysely's own constructor would wrap the driver in its per-query acquire and release: the module already holds the client.
  const executor = new DefaultQueryExecutor(dialect.createQueryCompiler(), dialect.createAdapter(), new FixedConnectionProvider(root), plugins);
  const props: KyselyProps = { config: { dialect, plugins }, driver: dialect.createDriver(), executor, dialect };
  return new RequestKysely<DB>({ props, connection, cursor: options.cursor });
}
