import {
  Injectable,
  ServiceUnavailableException,
  type CallHandler,
  type ExecutionContext,
  type NestInterceptor,
} from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { catchError, finalize, type Observable } from 'rxjs';
import { ConnectionScope } from '../connection/connection-scope.js';
import { DatabaseUnreachableError, PoolClosedError, PoolExhaustedError, PoolQueueFullError } from '../pool.errors.js';

/** Seconds a client is told to wait (Retry-After) when no connection could be had. */
const RETRY_AFTER_SECONDS = 1;

/**
 * Opens a connection scope around every handler (HTTP, RPC, WebSocket) and
 * closes it when the handler's observable completes, errors or is
 * unsubscribed. For HTTP it also closes the scope, cancelling running
 * queries, when the client hangs up before the response is sent, and turns
 * "no connection to be had" into 503 with Retry-After.
 */
@Injectable()
export class ConnectionScopeInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const scope = new ConnectionScope(() => describeHandler(context));
    if (context.getType() !== 'http') {
      return ConnectionScope.enter(scope, () => next.handle()).pipe(finalize(() => scope.close()));
    }
    const http = context.switchToHttp();
    const response = rawOf<ServerResponse>(http.getResponse());
    const onClose = (): void => {
      if (!response.writableFinished) scope.abort();
    };
    response.once('close', onClose);
    return ConnectionScope.enter(scope, () => next.handle()).pipe(
      catchError((error: unknown) => {
        throw isUnavailable(error) ? unavailable(response, error) : error;
      }),
      finalize(() => {
        response.off('close', onClose);
        scope.close();
      }),
    );
  }
}

function isUnavailable(error: unknown): error is Error {
  return (
    error instanceof PoolExhaustedError ||
    error instanceof PoolQueueFullError ||
    error instanceof DatabaseUnreachableError ||
    error instanceof PoolClosedError
  );
}

function unavailable(response: ServerResponse, error: Error): ServiceUnavailableException {
  if (!response.headersSent) response.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
  return new ServiceUnavailableException(error.message, { cause: error });
}

/** The Node object under Express' `req`/`res` or Fastify's `request.raw`/`reply.raw`. */
function rawOf<T>(value: unknown): T {
  return ((value as { raw?: T }).raw ?? value) as T;
}

function describeHandler(context: ExecutionContext): string {
  const handler = `${context.getClass().name}.${context.getHandler().name}`;
  if (context.getType() !== 'http') return `${context.getType()} handler ${handler}`;
  const request = rawOf<IncomingMessage>(context.switchToHttp().getRequest());
  return `${request.method} ${request.url} (${handler})`;
}
