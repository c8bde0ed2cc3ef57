import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { finalize, type Observable } from 'rxjs';
import { ConnectionScope } from '../connection/connection-scope.js';

/**
 * Opens a connection scope around every handler whose request has none (RPC,
 * WebSocket, HTTP requests that did not come through the server) and closes
 * it when the handler's observable completes, errors or is unsubscribed. For
 * HTTP it also closes the scope, cancelling running queries, when the client
 * hangs up before the response is sent.
 *
 * An HTTP request the server scoped (see connection-scope.http-server.ts)
 * keeps that scope, which ends with the response.
 *
 * HTTP routes registered while the server scopes their requests do not get
 * this interceptor at all (see `coverHttpRoutes()`): Nest builds an
 * interceptor pipeline (Observables, subjects, client-disconnect listeners)
 * for every request of a route that has any interceptor, and that pipeline
 * cost more than everything else the module does per request.
 */
@Injectable()
export class ConnectionScopeInterceptor implements NestInterceptor {
  private httpRoutesCovered = false;

  constructor() {
    // Nest keeps an interceptor only where `intercept` is a function when it
    // builds a handler's pipeline, which it does once per route (HTTP, RPC,
    // WebSocket) and per request for request-scoped controllers.
    Object.defineProperty(this, 'intercept', {
      configurable: true,
      enumerable: false,
      get: () => (this.httpRoutesCovered ? undefined : interceptScope),
    });
  }

  /**
   * @internal While true, Nest building a handler's pipeline finds no
   * `intercept` here and leaves the interceptor out. PoolCoreModule sets it
   * for the span in which Nest registers the HTTP routes, whose requests the
   * server scopes: after WebSocket gateways and before microservice
   * listeners, which keep the interceptor.
   */
  coverHttpRoutes(covered: boolean): void {
    this.httpRoutesCovered = covered;
  }

  declare intercept: (context: ExecutionContext, next: CallHandler) => Observable<unknown>;
}

function interceptScope(context: ExecutionContext, next: CallHandler): Observable<unknown> {
  const isHttp = context.getType() === 'http';
  const response = isHttp ? rawResponse(context.switchToHttp().getResponse()) : undefined;
  // Opened by the server for this request (a request-scoped controller gets the interceptor), and ended with its response.
  if (ConnectionScope.of(response) !== undefined) return next.handle();
  // A message handler whose scope another interceptor of this module (or the caller) opened.
  if (!isHttp && ConnectionScope.current()?.isClosed === false) return next.handle();
  const scope = new ConnectionScope(() => `${context.getType()} handler ${context.getClass().name}.${context.getHandler().name}`, response);
  const onClose = (): void => {
    if (!response?.writableFinished) scope.abort();
  };
  response?.once('close', onClose);
  return ConnectionScope.enter(scope, () => next.handle()).pipe(
    finalize(() => {
      response?.off('close', onClose);
      scope.close();
    }),
  );
}

/** The Node response under Express' `res` or Fastify's `reply`. */
function rawResponse(response: unknown): ServerResponse | undefined {
  const candidate = (response as { raw?: unknown } | undefined)?.raw ?? response;
  return typeof (candidate as ServerResponse | undefined)?.once === 'function' ? (candidate as ServerResponse) : undefined;
}
