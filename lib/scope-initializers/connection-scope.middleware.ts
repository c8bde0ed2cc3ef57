import { Injectable, type NestMiddleware } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConnectionScope } from '../connection/connection-scope.js';

// The scope of each scoped request, for the interceptor. A WeakMap rather
// than a property on the request: adding a property to Express' or Node's
// request and response objects (which already carry many) turns them into
// dictionary-mode objects, and every later property access of Express and
// node:http on them got slower: that cost more than all of the scope's work.
const requestScopes = new WeakMap<IncomingMessage, ConnectionScope>();

/**
 * Opens the connection scope of an HTTP request (Express and Fastify) before
 * guards, pipes, interceptors and the handler run, and closes it when the
 * response is over: handed back once sent, cancelled and handed back when the
 * client hangs up first. The response's 'close' event comes in both cases, so
 * no client outlives its request. Applied to every route by the module.
 *
 * Opening the scope here rather than in an interceptor keeps Nest's
 * interceptor pipeline (and its per-request Observables) off HTTP routes,
 * which is most of what a scoped connection used to cost per request.
 */
@Injectable()
export class ConnectionScopeMiddleware implements NestMiddleware {
  use(request: IncomingMessage, response: ServerResponse, next: (error?: unknown) => void): void {
    // The request names the holder in leak warnings, lazily: no closure for that.
    const scope = new ConnectionScope(request, response);
    requestScopes.set(request, scope);
    // 'close' comes once: `on` spares the wrapper `once` would add.
    response.on('close', () => {
      if (response.writableFinished) scope.close();
      else scope.abort();
    });
    ConnectionScope.enter(scope, next);
  }
}

/** The scope ConnectionScopeMiddleware opened for this HTTP request (Node request, Express `req` or Fastify `request`), if any. */
export function requestScopeOf(request: unknown): ConnectionScope | undefined {
  const raw = (request as { raw?: unknown } | undefined)?.raw ?? request;
  return typeof raw === 'object' && raw !== null ? requestScopes.get(raw as IncomingMessage) : undefined;
}
