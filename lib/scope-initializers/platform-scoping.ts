import type { HttpServer, MiddlewareConsumer } from '@nestjs/common';
import { connectionScopeMiddleware, scopeExpressRequests } from './connection-scope.middleware.js';
import { scopeFastifyRequests } from './connection-scope.fastify-hooks.js';

/**
 * Scopes every request of the adapter's platform through public extension
 * points: on Express an application-level middleware; on Fastify a Nest
 * middleware for every route (Nest mounts a global module's middleware
 * before the others', and Fastify runs Nest's middleware in its first
 * `onRequest` hook) and hooks that carry the scope past the body parser.
 *
 * @returns false for another platform, whose routes `ConnectionScopeInterceptor` can scope.
 */
export function scopePlatformRequests(adapter: HttpServer, consumer: MiddlewareConsumer): boolean {
  switch (adapter.getType()) {
    case 'express':
      scopeExpressRequests(adapter.getInstance());
      return true;
    case 'fastify':
      consumer.apply(connectionScopeMiddleware).forRoutes('*');
      scopeFastifyRequests(adapter.getInstance());
      return true;
    default:
      return false;
  }
}
