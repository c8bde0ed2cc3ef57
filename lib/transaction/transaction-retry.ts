import { DatabaseError } from 'pg';
import { ConnectionFailedError, PrimaryLostError } from '../pool.errors.js';
import { delay } from '../pool.utils.js';
import type { TransactionRetryOptions } from './transaction-options.interface.js';

export const DEFAULT_RETRY_INITIAL_DELAY_MS = 20;
export const DEFAULT_RETRY_MAX_DELAY_MS = 500;

// serialization_failure and deadlock_detected: the server gave up on the
// transaction because of concurrent ones; the same work may succeed if run again.
const RETRYABLE_SQLSTATES = new Set(['40001', '40P01']);

// Failures after which a transaction may run again once, whatever `retry` says (see allowRerun()).
const rerunnable = new WeakSet<object>();

/**
 * Marks `error`, which ended a transaction of the module, as one it may run
 * again after, if it is a connection that failed (ConnectionFailedError) or
 * a server that stopped being the primary (PrimaryLostError): the caller
 * (see OpenTransaction) has checked that nothing of it took effect.
 */
export function allowRerun(error: unknown): void {
  if (error instanceof ConnectionFailedError || error instanceof PrimaryLostError) rerunnable.add(error);
}

/**
 * Runs `attempt` again after a serialization failure or a deadlock, at most
 * `retry.maxRetries` more times, waiting longer before each retry. Without
 * `retry` it runs once, but for one case: a transaction whose connection
 * failed or whose server turned out no longer to be the primary, before
 * anything of it took effect, runs again once, at once (see allowRerun()):
 * the server ended it, and the next connection goes to a server that works.
 */
export async function withRetries<T>(retry: TransactionRetryOptions | undefined, attempt: () => Promise<T>): Promise<T> {
  let ranAgain = false;
  for (let failures = 0; ; failures++) {
    try {
      return await attempt();
    } catch (error) {
      if (!ranAgain && rerunnable.has(error as object)) {
        ranAgain = true;
        failures--;
        continue;
      }
      if (!retry || failures >= retry.maxRetries || !isRetryable(error)) throw error;
      await delay(backoffMs(retry, failures));
    }
  }
}

function isRetryable(error: unknown): boolean {
  // An ORM may wrap pg's error in its own (Drizzle's DrizzleQueryError): the server's answer is its cause.
  const failure = error instanceof Error && !(error instanceof DatabaseError) ? error.cause : error;
  return failure instanceof DatabaseError && failure.code !== undefined && RETRYABLE_SQLSTATES.has(failure.code);
}

function backoffMs(retry: TransactionRetryOptions, failures: number): number {
  const initial = retry.initialDelayMs ?? DEFAULT_RETRY_INITIAL_DELAY_MS;
  const ceiling = Math.min(retry.maxDelayMs ?? DEFAULT_RETRY_MAX_DELAY_MS, initial * 2 ** failures);
  // Half fixed, half random, so transactions that collided do not retry in lockstep and collide again.
  return ceiling / 2 + (Math.random() * ceiling) / 2;
}
