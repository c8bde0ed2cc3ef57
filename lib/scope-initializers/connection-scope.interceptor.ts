import { Injectable, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { ServerResponse } from 'node:http';
import { finalize, type Observable } from 'rxjs';
import { ConnectionScope } from '../connection/connection-scope.js';

/**
 * Opens a connection scope around every handler (HTTP, RPC, WebSocket) and
 * closes it when the handler's observable completes, errors or is
 * unsubscribed. For HTTP it also closes the scope, cancelling running
 * queries, when the client hangs up before the response is sent.
 */
@Injectable()
export class ConnectionScopeInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const scope = new ConnectionScope();
    const response = context.getType() === 'http' ? rawResponse(context.switchToHttp().getResponse()) : undefined;
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
}

/** The Node response under Express' `res` or Fastify's `reply`. */
function rawResponse(response: unknown): ServerResponse | undefined {
  const candidate = (response as { raw?: unknown } | undefined)?.raw ?? response;
  return typeof (candidate as ServerResponse | undefined)?.once === 'function' ? (candidate as ServerResponse) : undefined;
}
