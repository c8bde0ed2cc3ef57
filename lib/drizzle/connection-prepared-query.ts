import { DrizzleQueryError } from 'drizzle-orm';
import { NodePgPreparedQuery } from 'drizzle-orm/node-postgres';
import type { PreparedQueryConfig } from 'drizzle-orm/pg-core';
import { PoolError } from '../pool.errors.js';

/**
 * Drizzle's prepared query, but for the module's own errors: Drizzle wraps
 * every failure in a `DrizzleQueryError`, which would hide what the module
 * acts on. A hang-up, a passed deadline or a datasource without connections
 * comes out bare, as from `connection.query()`, so that Nest answers it 499,
 * 504 or 503 and a transaction whose connection failed may run again. The
 * server's errors stay wrapped, as Drizzle users expect (`error.cause`).
 */
export class ConnectionPreparedQuery<T extends PreparedQueryConfig> extends NodePgPreparedQuery<T> {
  override execute(placeholderValues?: Record<string, unknown>): Promise<T['execute']> {
    return super.execute(placeholderValues).catch(unwrapModuleError);
  }

  override all(placeholderValues?: Record<string, unknown>): Promise<T['all']> {
    return super.all(placeholderValues).catch(unwrapModuleError);
  }
}

function unwrapModuleError(error: unknown): never {
  throw error instanceof DrizzleQueryError && error.cause instanceof PoolError ? error.cause : error;
}
