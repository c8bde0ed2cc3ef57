import type { HttpServer, MiddlewareConsumer } from '@nestjs/common';
import { connectionScopeMiddleware, scopeExpressRequests } from './connection-scope.middleware.js';

/**
 * Scopes every request of the adapter's platform through public extension
 * points: on Express an application-level middleware; on Fastify a Nest
 * middleware for every route (Nest mounts a global module's middleware
 * before the others', and Fastify runs Nest's middleware in its first
 * `onRequest` hook). Fastify runs its body parser in the async context the
 * request had when the parser started (an AsyncResource of its own), so the
 * scope reaches guards, pipes and handlers of requests with a body too.
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
      return true;
    default:
      return false;
  }
}
