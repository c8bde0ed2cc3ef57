import type { IncomingMessage, ServerResponse } from 'node:http';
import { runInRequestScope, scopeOf } from './request-scope.js';

type Middleware = (request: IncomingMessage, response: ServerResponse, next: () => void) => void;

/** What scopeExpressRequests() needs of an Express application. */
interface ExpressApplication {
  use(middleware: Middleware): unknown;
}

/**
 * Connect-style middleware (Express, and Fastify through middie) that opens
 * the connection scope of the request and runs the rest of the chain in it.
 * A request whose scope is open already (the HTTP server's fast path,
 * connection-scope.http-server.ts) keeps it.
 */
export const connectionScopeMiddleware: Middleware = function connectionScope(request, response, next) {
  if (scopeOf(response) !== undefined) return next();
  runInRequestScope(request, response, next);
};

/**
 * Opens the connection scope of every request the Express application
 * handles, in an application-level middleware mounted before Nest's
 * middleware and routes: whoever calls the application (its own server,
 * supertest, another server it is handed to, a serverless handler) gets one.
 */
export function scopeExpressRequests(app: ExpressApplication): void {
  app.use(connectionScopeMiddleware);
}
