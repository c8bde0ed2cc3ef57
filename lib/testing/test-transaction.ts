import type { INestApplicationContext } from '@nestjs/common';
import type { Pool, PoolClient } from 'pg';
import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';
import { getPoolToken } from '../pool.utils.js';
import { SharedConnection } from './shared-connection.js';

/** A test's transaction on one datasource (see beginTestTransaction()). */
export interface TestTransaction {
  /** Waits for the statements already sent, rolls everything back and gives the pool back its own connections. */
  rollback(): Promise<void>;
}

type Connect = (callback?: (error: Error | undefined, client?: PoolClient, release?: () => void) => void) => Promise<PoolClient> | undefined;

/**
 * Begins a transaction on one connection of `datasource`'s pool (default
 * `'default'`) and, until `rollback()`, lends that connection to every
 * borrower of the pool: requests (HTTP through supertest or `inject()`,
 * microservices), `@InjectConnection()`, `@InjectPool()`, Drizzle and
 * Kysely. Their transactions become savepoints of the test's; each of their
 * statements outside one runs in a savepoint of its own, so that a failed
 * statement does not abort the test's transaction. Statements run one at a
 * time, and while a request's transaction runs, only that request's.
 */
export async function beginTestTransaction(app: INestApplicationContext, datasource: string = DEFAULT_DATASOURCE_NAME): Promise<TestTransaction> {
  const pool = app.get<Pool>(getPoolToken(datasource), { strict: false });
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
  } catch (error) {
    client.release(error as Error);
    throw error;
  }
  const shared = new SharedConnection(client);
  // An own property over pg-pool's method, for this pool alone, removed by rollback().
  const connect: Connect = (callback) => {
    const borrowed = shared.borrow();
    if (!callback) return Promise.resolve(borrowed);
    queueMicrotask(() => callback(undefined, borrowed, () => undefined));
    return undefined;
  };
  Object.defineProperty(pool, 'connect', { value: connect, configurable: true, writable: true });
  return {
    async rollback(): Promise<void> {
      await shared.end();
      delete (pool as { connect?: unknown }).connect;
      let failure: Error | undefined;
      try {
        await client.query('ROLLBACK');
      } catch (error) {
        failure = error as Error;
      }
      // A connection whose rollback failed is closed, not lent again.
      client.release(failure);
      if (failure) throw failure;
    },
  };
}

type Hook = (fn: () => Promise<void>) => void;

/** Where `rollbackEachTest()` registers its two hooks; the runner's globals (Jest, Vitest with globals, Mocha) by default. */
export interface RollbackEachTestOptions {
  /** Datasource name. Default `'default'`. */
  datasource?: string;
  beforeEach?: Hook;
  afterEach?: Hook;
}

/**
 * Runs each test of the enclosing `describe` inside a transaction of its
 * own, rolled back at its end (see beginTestTransaction()). `app` is called
 * before each test, so it may return an application made in `beforeAll`.
 */
export function rollbackEachTest(app: () => INestApplicationContext, options: RollbackEachTestOptions = {}): void {
  const globals = globalThis as { beforeEach?: Hook; afterEach?: Hook };
  const before = options.beforeEach ?? globals.beforeEach;
  const after = options.afterEach ?? globals.afterEach;
  if (!before || !after) throw new TypeError('rollbackEachTest() needs beforeEach and afterEach: pass them in its options');
  let transaction: TestTransaction | undefined;
  before(async () => {
    transaction = await beginTestTransaction(app(), options.datasource);
  });
  after(async () => {
    const ending = transaction;
    transaction = undefined;
    await ending?.rollback();
  });
}
