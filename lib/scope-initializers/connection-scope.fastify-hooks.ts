import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConnectionScope } from '../connection/connection-scope.js';
import { openRequestScope } from './request-scope.js';

// Where a request keeps its scope from one hook to the next.
const SCOPE = Symbol('nestjs-pg-pool:scope');

interface FastifyRequest {
  raw: IncomingMessage;
  [SCOPE]?: ConnectionScope | null;
}
type Hook = (request: FastifyRequest, reply: { raw: ServerResponse }, done: () => void) => void;

/** What scopeFastifyRequests() needs of a Fastify instance. */
interface FastifyInstance {
  addHook(name: 'onRequest' | 'preValidation', hook: Hook): unknown;
  decorateRequest(name: symbol, value: null): unknown;
}

/**
 * Opens the connection scope of every request the Fastify instance handles,
 * in an `onRequest` hook: whoever calls the instance (its server,
 * `app.inject()`, another server) gets one. A request the HTTP server
 * already scoped (connection-scope.http-server.ts) keeps that scope.
 *
 * Fastify reads the body from stream events, which run in the async context
 * of the socket, not of the hook: a `preValidation` hook enters the scope
 * again, so that guards, pipes and the handler run in it. Nest's own
 * middleware run in an `onRequest` hook registered before this one: on
 * requests that bypass the server they run outside the scope.
 */
export function scopeFastifyRequests(fastify: FastifyInstance): void {
  // Declared, so that every request object keeps one shape.
  fastify.decorateRequest(SCOPE, null);
  fastify.addHook('onRequest', (request, reply, done) => {
    // Opened by the server (the fast path) and current already: no second AsyncLocalStorage run.
    const opened = ConnectionScope.of(reply.raw);
    const scope = opened ?? openRequestScope(request.raw, reply.raw);
    request[SCOPE] = scope;
    if (opened) done();
    else ConnectionScope.enter(scope, done);
  });
  fastify.addHook('preValidation', (request, _reply, done) => {
    const scope = request[SCOPE];
    if (scope && ConnectionScope.current() !== scope) ConnectionScope.enter(scope, done);
    else done();
  });
}
