import type { CallHandler, ExecutionContext, NestInterceptor } from '@nestjs/common';
import type { DiscoveryService, MetadataScanner } from '@nestjs/core';
import type { Observable } from 'rxjs';
import { ConnectionScopeInterceptor } from './connection-scope.interceptor.js';
import type { HandlerMetadataKeys } from './handler-metadata-keys.js';
import { scopeOf } from './request-scope.js';

/** Opens the scope of a message. */
const MESSAGE_SCOPE = new ConnectionScopeInterceptor();

/** Makes the scope of an `@Sse()` request hold its clients per query as its handler starts (see ConnectionScope.holdPerQuery()). */
const STREAMED_ANSWER: NestInterceptor = {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    scopeOf(context.switchToHttp().getResponse())?.holdPerQuery();
    return next.handle();
  },
};

/**
 * Puts interceptors of the module on the handlers that need one, first among
 * the handler's interceptors, as `@UseInterceptors()` would:
 * - microservice message and event handlers of controllers and the message
 *   handlers of WebSocket gateways get the scope interceptor. A global one
 *   would not do: a microservice connected with `connectMicroservice()` gets
 *   Nest's global enhancers only with `inheritAppConfig`, and builds its
 *   handlers right away; and Nest builds an interceptor pipeline for every
 *   request of every HTTP route when any global interceptor is registered,
 *   though the platform's extension points scope those requests already.
 *   Where the caller opened a scope (a hybrid handler called from HTTP), the
 *   interceptor keeps it.
 * - `@Sse()` handlers get one that makes their request's scope long-lived:
 *   an event stream must not pin a pooled client for its whole life. Only
 *   those routes pay for an interceptor pipeline.
 * Runs as the application's providers are created, before
 * `connectMicroservice()`, the gateways or the router build the handlers.
 * The classes are shared by every application of the process: each handler
 * is decorated once, with interceptors that hold nothing of any one application.
 */
export function addHandlerInterceptors(discovery: DiscoveryService, scanner: MetadataScanner, keys: HandlerMetadataKeys): void {
  for (const prototype of prototypes(discovery.getControllers())) {
    for (const handler of handlers(scanner, prototype)) {
      if (keys.patterns.some((key) => Reflect.hasMetadata(key, handler))) prependInterceptor(keys, handler, MESSAGE_SCOPE);
      if (Reflect.hasMetadata(keys.sse, handler)) prependInterceptor(keys, handler, STREAMED_ANSWER);
    }
  }
  const { gateway, messageMapping } = keys;
  if (gateway === undefined || messageMapping === undefined) return;
  const gateways = discovery.getProviders().filter((wrapper) => wrapper.metatype && Reflect.getMetadata(gateway, wrapper.metatype) === true);
  for (const prototype of prototypes(gateways)) {
    for (const handler of handlers(scanner, prototype)) {
      if (Reflect.hasMetadata(messageMapping, handler)) prependInterceptor(keys, handler, MESSAGE_SCOPE);
    }
  }
}

function* prototypes(wrappers: Array<{ metatype?: unknown }>): Generator<object> {
  for (const wrapper of wrappers) {
    const prototype: unknown = (wrapper.metatype as { prototype?: unknown } | null | undefined)?.prototype;
    if (typeof prototype === 'object' && prototype !== null) yield prototype;
  }
}

function* handlers(scanner: MetadataScanner, prototype: object): Generator<object> {
  for (const name of scanner.getAllMethodNames(prototype)) {
    const handler: unknown = (prototype as Record<string, unknown>)[name];
    if (typeof handler === 'function') yield handler;
  }
}

function prependInterceptor(keys: HandlerMetadataKeys, handler: object, interceptor: NestInterceptor): void {
  const interceptors = (Reflect.getMetadata(keys.interceptors, handler) as unknown[] | undefined) ?? [];
  if (!interceptors.includes(interceptor)) Reflect.defineMetadata(keys.interceptors, [interceptor, ...interceptors], handler);
}
