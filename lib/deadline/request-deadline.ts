import { ConnectionScope } from '../connection/connection-scope.js';
import { InvalidDeadlineError, NoConnectionScopeError } from '../pool.errors.js';

/** Throws InvalidDeadlineError unless `millis` is a positive, finite number. */
export function validateDeadline(millis: unknown): asserts millis is number {
  if (typeof millis !== 'number' || !Number.isFinite(millis) || millis <= 0) throw new InvalidDeadlineError(millis);
}

/**
 * Gives the running request a deadline `millis` from now, for its work on
 * every datasource, in place of their `requestDeadlineMillis`: for an
 * application that knows its caller's budget (a timeout header, a gRPC
 * deadline), from a guard, an interceptor or the handler. A later call
 * replaces it. When it passes, what runs is cancelled on the server and the
 * request's later queries fail with `DeadlineExceededError` (HTTP 504).
 *
 * @throws NoConnectionScopeError outside a request (or `ConnectionScope.run()`).
 */
export function setRequestDeadline(millis: number): void {
  validateDeadline(millis);
  const scope = ConnectionScope.current();
  if (scope === undefined) throw new NoConnectionScopeError(undefined, 'setRequestDeadline()');
  scope.setDeadline(millis, 'now');
}
