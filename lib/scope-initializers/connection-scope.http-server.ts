import type { IncomingMessage, ServerResponse } from 'node:http';
import { runInRequestScope } from './request-scope.js';

type RequestListener = (this: unknown, request: IncomingMessage, response: ServerResponse) => void;

/** What scopeHttpRequests() needs of a server: Node's http, https and http2 servers all fit. */
interface RequestEmitter {
  listeners(event: 'request'): Array<(...args: never[]) => unknown>;
  removeListener(event: 'request', listener: RequestListener): unknown;
  on(event: 'request', listener: RequestListener): unknown;
}

// Marks a listener this module wrapped (true), so that a second app on the same server does not wrap
// it again, or one of its own that needs no scope (false, see leaveUnscoped()).
const SCOPING = Symbol('nestjs-pg-pool:scoping');
type ScopingListener = RequestListener & { [SCOPING]?: boolean };

/**
 * The fast path of HTTP scoping, an optimisation over the platform's own
 * extension points (platform-scoping.ts), which scope every request and keep
 * the scope opened here. Opens the scope of every HTTP request `server`
 * receives, before Express or Fastify see it, by wrapping the server's
 * 'request' listeners (the adapter's app): middleware the application
 * mounted itself with `app.use()`, which come before the module's, run in it
 * too.
 *
 * It relies on Nest having attached the platform to its server when
 * PoolCoreModule.configure() runs; where it has not (no listeners yet), it
 * does nothing and the platform's extension points scope the requests alone.
 * `isServerScoped()` tells which; a test checks it, so that a change in Nest
 * shows.
 */
export function scopeHttpRequests(server: unknown): void {
  if (!isRequestEmitter(server)) return;
  const listeners = server.listeners('request') as ScopingListener[];
  // Replaced in place, in order: later listeners of others stay behind them.
  for (const listener of listeners) server.removeListener('request', listener);
  for (const listener of listeners) server.on('request', listener[SCOPING] !== undefined ? listener : scoping(listener));
}

function scoping(listener: RequestListener): ScopingListener {
  const scoped: ScopingListener = function (this: unknown, request, response) {
    runInRequestScope(request, response, () => listener.call(this, request, response));
  };
  scoped[SCOPING] = true;
  return scoped;
}

/** True when every 'request' listener of `server` opens connection scopes (see scopeHttpRequests()). */
export function isServerScoped(server: unknown): boolean {
  if (!isRequestEmitter(server)) return false;
  const listeners = (server.listeners('request') as ScopingListener[]).filter((listener) => listener[SCOPING] !== false);
  return listeners.length > 0 && listeners.every((listener) => listener[SCOPING] === true);
}

/**
 * Marks a 'request' listener of the module's own that only watches requests
 * (the shutdown drain's), so that scopeHttpRequests() does not open a scope
 * for it and isServerScoped() does not count it.
 */
export function leaveUnscoped<T extends (...args: never[]) => void>(listener: T): T {
  (listener as unknown as ScopingListener)[SCOPING] = false;
  return listener;
}

function isRequestEmitter(server: unknown): server is RequestEmitter {
  const candidate = server as Partial<RequestEmitter> | null | undefined;
  return typeof candidate?.listeners === 'function' && typeof candidate.removeListener === 'function' && typeof candidate.on === 'function';
}
