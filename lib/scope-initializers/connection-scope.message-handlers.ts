import type { DiscoveryService, MetadataScanner } from '@nestjs/core';
import { INTERCEPTORS_METADATA } from '@nestjs/common/constants.js';
import { ConnectionScopeInterceptor } from './connection-scope.interceptor.js';

// What @MessagePattern() and @EventPattern() put on a handler: @nestjs/microservices' PATTERN_METADATA
// (that package is optional here, so its value stands here; the microservice tests fail if it changes).
const PATTERN_METADATA = 'microservices:pattern';

/** The interceptor on every message handler: it holds nothing of any one application. */
const MESSAGE_SCOPE = new ConnectionScopeInterceptor();

/**
 * Puts the scope interceptor on every microservice message and event
 * handler of the application's controllers, first among the handler's own
 * interceptors, as `@UseInterceptors()` would. The global interceptor does
 * not reach them in a hybrid application: a microservice connected with
 * `connectMicroservice()` gets Nest's global enhancers only with
 * `inheritAppConfig`, and builds its handlers right away. Runs as the
 * application's providers are created, before that. Where the global
 * interceptor does reach them too, the inner one keeps the outer's scope.
 */
export function scopeMessageHandlers(discovery: DiscoveryService, scanner: MetadataScanner): void {
  for (const wrapper of discovery.getControllers()) {
    const prototype: unknown = wrapper.metatype?.prototype;
    if (typeof prototype !== 'object' || prototype === null) continue;
    for (const name of scanner.getAllMethodNames(prototype)) {
      const handler: unknown = (prototype as Record<string, unknown>)[name];
      if (typeof handler !== 'function' || !Reflect.hasMetadata(PATTERN_METADATA, handler)) continue;
      const interceptors = (Reflect.getMetadata(INTERCEPTORS_METADATA, handler) as unknown[] | undefined) ?? [];
      // Classes are shared by every application of the process: decorated once.
      if (!interceptors.includes(MESSAGE_SCOPE)) Reflect.defineMetadata(INTERCEPTORS_METADATA, [MESSAGE_SCOPE, ...interceptors], handler);
    }
  }
}
