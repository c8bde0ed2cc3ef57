import type { CallHandler, ExecutionContext, NestInterceptor } from '@nestjs/common';
import { INTERCEPTORS_METADATA, SSE_METADATA } from '@nestjs/common/constants.js';
import type { DiscoveryService, MetadataScanner } from '@nestjs/core';
import type { Observable } from 'rxjs';
import { ConnectionScope } from '../connection/connection-scope.js';
import { ConnectionScopeInterceptor } from './connection-scope.interceptor.js';

// What @MessagePattern() and @EventPattern() put on a handler: @nestjs/microservices' PATTERN_METADATA
// (that package is optional here, so its value stands here; the microservice tests fail if it changes).
const PATTERN_METADATA = 'microservices:pattern';

/** Opens the scope of a message: the global interceptor does not reach every message handler. */
const MESSAGE_SCOPE = new ConnectionScopeInterceptor();

/** Makes the scope of an `@Sse()` request long-lived as its handler starts (see ConnectionScope.streamed()). */
const STREAMED_ANSWER: NestInterceptor = {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    ConnectionScope.of(context.switchToHttp().getResponse())?.streamed();
    return next.handle();
  },
};

/**
 * Puts interceptors of the module on the handlers of the application's
 * controllers that need one of their own, first among the handler's
 * interceptors, as `@UseInterceptors()` would:
 * - microservice message and event handlers get the scope interceptor. The
 *   global one does not reach them in a hybrid application: a microservice
 *   connected with `connectMicroservice()` gets Nest's global enhancers only
 *   with `inheritAppConfig`, and builds its handlers right away. Where the
 *   global one reaches them too, the inner one keeps the outer's scope.
 * - `@Sse()` handlers get one that makes their request's scope long-lived:
 *   an event stream must not pin a pooled client for its whole life. Only
 *   those routes pay for an interceptor pipeline.
 * Runs as the application's providers are created, before
 * `connectMicroservice()` or the router builds the handlers. The classes
 * are shared by every application of the process: each handler is
 * decorated once, with interceptors that hold nothing of any one application.
 */
export function addHandlerInterceptors(discovery: DiscoveryService, scanner: MetadataScanner): void {
  for (const wrapper of discovery.getControllers()) {
    const prototype: unknown = wrapper.metatype?.prototype;
    if (typeof prototype !== 'object' || prototype === null) continue;
    for (const name of scanner.getAllMethodNames(prototype)) {
      const handler: unknown = (prototype as Record<string, unknown>)[name];
      if (typeof handler !== 'function') continue;
      if (Reflect.hasMetadata(PATTERN_METADATA, handler)) prependInterceptor(handler, MESSAGE_SCOPE);
      if (Reflect.hasMetadata(SSE_METADATA, handler)) prependInterceptor(handler, STREAMED_ANSWER);
    }
  }
}

function prependInterceptor(handler: object, interceptor: NestInterceptor): void {
  const interceptors = (Reflect.getMetadata(INTERCEPTORS_METADATA, handler) as unknown[] | undefined) ?? [];
  if (!interceptors.includes(interceptor)) Reflect.defineMetadata(INTERCEPTORS_METADATA, [interceptor, ...interceptors], handler);
}
