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
 * Carries the connection scope of every request the Fastify instance handles
 * from its `onRequest` hooks to the handler: whoever calls the instance (its
 * server, `app.inject()`, another server) gets one. The scope is opened
 * before Nest's middleware, by the server (connection-scope.http-server.ts)
 * or by the module's own Nest middleware (connection-scope.middleware.ts);
 * the `onRequest` hook added here, which runs after both, opens it where
 * neither did and records it on the request.
 *
 * Fastify reads the body from stream events, which run in the async context
 * of the socket, not of the hooks: a `preValidation` hook enters the scope
 * again, so that guards, pipes and the handler run in it.
 */
export function scopeFastifyRequests(fastify: FastifyInstance): void {
  // Declared, so that every request object keeps one shape.
  fastify.decorateRequest(SCOPE, null);
  fastify.addHook('onRequest', (request, reply, done) => {
    // Opened before Nest's middleware and current already: no second AsyncLocalStorage run.
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
