import { Injectable, type NestMiddleware } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConnectionScope } from '../connection/connection-scope.js';

const REQUEST_SCOPE = Symbol('nestjs-pg-pool:connectionScope');

type ScopedRequest = IncomingMessage & { [REQUEST_SCOPE]?: ConnectionScope };

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
    const scope = new ConnectionScope(() => `${request.method} ${request.url}`, response);
    (request as ScopedRequest)[REQUEST_SCOPE] = scope;
    response.once('close', () => {
      if (response.writableFinished) scope.close();
      else scope.abort();
    });
    ConnectionScope.enter(scope, next);
  }
}

/** The scope ConnectionScopeMiddleware opened for this HTTP request (Node request, Express `req` or Fastify `request`), if any. */
export function requestScopeOf(request: unknown): ConnectionScope | undefined {
  const raw = ((request as { raw?: unknown } | undefined)?.raw ?? request) as ScopedRequest | undefined;
  return raw?.[REQUEST_SCOPE];
}
