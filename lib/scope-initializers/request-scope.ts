import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConnectionScope } from '../connection/connection-scope.js';

/**
 * The connection scope of one HTTP request, ended with its response: closed
 * (clients handed back) once the response was sent, aborted (running queries
 * cancelled) when the client hung up first. The response's 'close' comes in
 * both cases, so no client outlives its request.
 */
export function openRequestScope(request: IncomingMessage, response: ServerResponse): ConnectionScope {
  const scope = new ConnectionScope(request, response);
  response.once('close', () => {
    if (response.writableFinished) scope.close();
    else scope.abort();
  });
  return scope;
}
