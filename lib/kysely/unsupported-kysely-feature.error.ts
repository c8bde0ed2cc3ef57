import { PoolError } from '../pool.errors.js';

/**
 * A Kysely feature that cannot run on the request's connection was used:
 * the message names it and says what to use instead.
 */
export class UnsupportedKyselyFeatureError extends PoolError {
  constructor(
    /** The feature, e.g. `'db.startTransaction()'`. */
    readonly feature: string,
    advice: string,
  ) {
    super(`${feature} is not supported by nestjs-pg-pool's Kysely: ${advice}`);
  }
}
