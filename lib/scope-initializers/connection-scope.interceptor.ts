import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { finalize, type Observable } from 'rxjs';
import { ConnectionScope } from '../connection/connection-scope.js';
import { runInContext } from '../context/request-context.js';
import { HttpRequestScope, scopeOf } from './request-scope.js';

/**
 * Opens a connection scope around a handler whose request has none and
 * closes it when the handler's observable completes, errors or is
 * unsubscribed. The module puts it on microservice message handlers and
 * WebSocket gateway handlers (connection-scope.handler-interceptors.ts).
 * Express and Fastify requests are scoped before they reach Nest (see
 * connection-scope.request-hook.ts); on another HTTP platform, register it as a global
 * interceptor (`APP_INTERCEPTOR`): it then also closes the scope, cancelling
 * running queries, when the client hangs up before the response is sent.
 *
 * A handler whose scope is open already (an HTTP request scoped before it,
 * a handler called inside `ConnectionScope.run()`) keeps that scope.
 */
@Injectable()
export class ConnectionScopeInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return interceptScope(context, next);
  }
}

function interceptScope(context: ExecutionContext, next: CallHandler): Observable<unknown> {
  const isHttp = context.getType() === 'http';
  const response = isHttp ? rawResponse(context.switchToHttp().getResponse()) : undefined;
  // Opened for this request before it reached Nest, and ended with its response.
  if (scopeOf(response) !== undefined) return next.handle();
  // A message handler whose scope the caller opened.
  if (!isHttp && ConnectionScope.current()?.isClosed === false) return next.handle();
  const holder = (): string => `${context.getType()} handler ${context.getClass().name}.${context.getHandler().name}`;
  const scope = response ? new HttpRequestScope(holder, response) : new ConnectionScope(holder);
  const onClose = (): void => {
    if (!response?.writableFinished) scope.abort();
  };
  response?.once('close', onClose);
  return runInContext(scope, () => next.handle()).pipe(
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
