import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConnectionScope } from '../connection/connection-scope.js';
import { openRequestScope } from './request-scope.js';

/** What scopeExpressRequests() needs of an Express application. */
interface ExpressApplication {
  use(middleware: (request: IncomingMessage, response: ServerResponse, next: () => void) => void): unknown;
}

/**
 * Opens the connection scope of every request the Express application
 * handles, in an application-level middleware mounted before Nest's
 * middleware and routes: whoever calls the application (its own server,
 * supertest, another server it is handed to, a serverless handler) gets one.
 * A request the HTTP server already scoped (connection-scope.http-server.ts)
 * keeps that scope.
 */
export function scopeExpressRequests(app: ExpressApplication): void {
  app.use(function connectionScope(request, response, next) {
    if (ConnectionScope.of(response) !== undefined) return next();
    ConnectionScope.enter(openRequestScope(request, response), next);
  });
}
