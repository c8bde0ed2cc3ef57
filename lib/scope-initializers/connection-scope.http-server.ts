import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConnectionScope } from '../connection/connection-scope.js';

type RequestListener = (this: unknown, request: IncomingMessage, response: ServerResponse) => void;

/** What scopeHttpRequests() needs of a server: Node's http, https and http2 servers all fit. */
interface RequestEmitter {
  listeners(event: 'request'): Array<(...args: never[]) => unknown>;
  removeListener(event: 'request', listener: RequestListener): unknown;
  on(event: 'request', listener: RequestListener): unknown;
}

// Marks a listener this module wrapped, so that a second app on the same server does not wrap it again.
const SCOPING = Symbol('nestjs-pg-pool:scoping');
type ScopingListener = RequestListener & { [SCOPING]?: true };

/**
 * Opens the connection scope of every HTTP request `server` receives, before
 * Express or Fastify see it, by wrapping the server's 'request' listeners
 * (the adapter's app), and closes it when the response is over: handed back
 * once sent, cancelled and handed back when the client hangs up first. The
 * response's 'close' event comes in both cases, so no client outlives its
 * request; most go back earlier, as Nest hands the answer to the adapter
 * (see connection-scope.http-adapter.ts).
 *
 * Why at the server and not in a Nest middleware: a middleware costs Nest's
 * wrappers (a WeakSet entry per request), middie on Fastify and a router
 * layer on Express on every request, about as much as all of the scope's own
 * work; the listener costs one call. Body parsers (raw-body, Fastify's) keep
 * the async context, so the handler runs in the scope.
 *
 * Requests that do not come through the server (Fastify's `inject()`, a
 * serverless handler calling the Express app) are not scoped: each of their
 * queries borrows a client of its own unless the caller runs them in
 * `ConnectionScope.run()`.
 *
 * @returns false when `server` is no server with 'request' listeners (an app without HTTP).
 */
export function scopeHttpRequests(server: unknown): boolean {
  if (!isRequestEmitter(server)) return false;
  const listeners = server.listeners('request') as ScopingListener[];
  if (listeners.length === 0) return false;
  // Replaced in place, in order: later listeners of others stay behind them.
  for (const listener of listeners) server.removeListener('request', listener);
  for (const listener of listeners) server.on('request', listener[SCOPING] ? listener : scoping(listener));
  return true;
}

function scoping(listener: RequestListener): ScopingListener {
  const scoped: ScopingListener = function (this: unknown, request, response) {
    const scope = new ConnectionScope(request, response);
    response.on('close', () => {
      if (response.writableFinished) scope.close();
      else scope.abort();
    });
    ConnectionScope.enter(scope, () => listener.call(this, request, response));
  };
  scoped[SCOPING] = true;
  return scoped;
}

function isRequestEmitter(server: unknown): server is RequestEmitter {
  const candidate = server as Partial<RequestEmitter> | null | undefined;
  return typeof candidate?.listeners === 'function' && typeof candidate.removeListener === 'function' && typeof candidate.on === 'function';
}
