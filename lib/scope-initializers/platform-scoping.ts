import type { HttpServer } from '@nestjs/common';
import { scopeExpressRequests } from './connection-scope.express-middleware.js';
import { scopeFastifyRequests } from './connection-scope.fastify-hooks.js';

/**
 * Scopes every request of the adapter's platform through its public
 * extension point (an Express middleware, Fastify hooks).
 *
 * @returns false for another platform, whose routes the interceptor scopes.
 */
export function scopePlatformRequests(adapter: HttpServer): boolean {
  switch (adapter.getType()) {
    case 'express':
      scopeExpressRequests(adapter.getInstance());
      return true;
    case 'fastify':
      scopeFastifyRequests(adapter.getInstance());
      return true;
    default:
      return false;
  }
}
