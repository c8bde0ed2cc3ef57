import type { ServerResponse } from 'node:http';
import { ConnectionScope } from '../connection/connection-scope.js';
import { runInContext } from '../context/request-context.js';
import { PoolUnavailableError } from '../pool.errors.js';
import type { RoutedRequest, ScopeHolder } from '../connection/scope-holder.js';

/** Seconds an HTTP client is told to wait (Retry-After) when no connection could be had. */
const RETRY_AFTER_SECONDS = 1;

/**
 * The connection scope of one HTTP request: it knows its response, which
 * the adapter's answer methods find it by (scopeOf()), and which a 503 for
 * want of a connection tells when to come back.
 */
export class HttpRequestScope extends ConnectionScope {
  private response: ServerResponse | undefined;

  constructor(holder: ScopeHolder, response: ServerResponse) {
    super(holder);
    this.response = response;
  }

  /** True when `response` answers this scope's request: a Node response, Express' `res` (one) or Fastify's `reply` (whose `raw` is one). */
  answers(response: unknown): boolean {
    const own = this.response;
    // Compared before `raw` is read: looking up a property Express' `res` lacks walks its whole prototype chain.
    return own !== undefined && (own === response || own === (response as { raw?: unknown } | null | undefined)?.raw);
  }

  override clientRefused(error: Error): void {
    const response = this.response;
    if (error instanceof PoolUnavailableError && response && !response.headersSent) {
      response.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
    }
  }

  protected override ended(): void {
    this.response = undefined;
  }
}

/** The scope of the running code if it is the one of the HTTP request `response` answers. */
export function scopeOf(response: unknown): HttpRequestScope | undefined {
  const scope = ConnectionScope.current();
  return scope instanceof HttpRequestScope && scope.answers(response) ? scope : undefined;
}

/**
 * Runs `next` in a new scope for the HTTP request, ended with its response:
 * closed (clients released) once the response was sent, aborted (running
 * queries cancelled) when the client hung up first. The response's 'close'
 * comes in both cases, so no client outlives its request.
 */
export function runInRequestScope<T>(request: RoutedRequest, response: ServerResponse, next: () => T): T {
  const scope = new HttpRequestScope(request, response);
  // on, not once: 'close' comes once, and once's wrapper and its removal cost on every request.
  response.on('close', () => {
    if (response.writableFinished) scope.close();
    else scope.abort();
  });
  return runInContext(scope, next);
}
