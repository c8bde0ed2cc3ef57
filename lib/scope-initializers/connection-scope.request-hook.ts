import type { ServerResponse } from 'node:http';
import type { AbstractHttpAdapter } from '@nestjs/core';
import type { RoutedRequest } from '../connection/scope-holder.js';
import { runInRequestScope } from './request-scope.js';

type RequestHook = (request: unknown, response: unknown, done: () => void) => void;

/**
 * Opens the connection scope of every HTTP request in Nest's request hook
 * (`HttpAdapter.setOnRequestHook()`), which both platforms run first: Express
 * in the adapter's own first middleware, before `app.use()` middleware, Nest
 * middleware and routes; Fastify in an `onRequest` hook the adapter adds as
 * it is made, before middie (Nest and `app.use()` middleware), body parsing,
 * guards and handlers. So whoever calls the application gets a scope: its
 * server, supertest, `inject()`, another server it is handed to. Both
 * platforms' body parsers keep the async context the request had (Fastify's
 * and raw-body's AsyncResource), so the scope reaches handlers of requests
 * with a body too.
 *
 * The adapter keeps one hook: an application that sets its own replaces this
 * one (see the docs' Concepts page).
 *
 * @returns false for another platform, whose routes `ConnectionScopeInterceptor` can scope.
 */
export function scopeRequests(adapter: AbstractHttpAdapter): boolean {
  switch (adapter.getType()) {
    case 'express':
      adapter.setOnRequestHook(expressHook);
      return true;
    case 'fastify':
      adapter.setOnRequestHook(fastifyHook);
      return true;
    default:
      return false;
  }
}

const expressHook: RequestHook = (request, response, done) => {
  runInRequestScope(request as RoutedRequest, response as ServerResponse, done);
};

// The scope holds Fastify's request rather than the Node one: it alone knows the route matched (see describeHolder()).
const fastifyHook: RequestHook = (request, reply, done) => {
  runInRequestScope(request as RoutedRequest, (reply as { raw: ServerResponse }).raw, done);
};
