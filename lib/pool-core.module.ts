import { Global, Inject, Module, type NestModule } from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, HttpAdapterHost, MetadataScanner } from '@nestjs/core';
import { DatasourceRegistry } from './datasource/datasource.registry.js';
import { PoolStatsService } from './datasource/pool-stats.service.js';
import { releaseOnAnswer } from './scope-initializers/connection-scope.http-adapter.js';
import { addHandlerInterceptors } from './scope-initializers/connection-scope.handler-interceptors.js';
import { scopeRequests } from './scope-initializers/connection-scope.request-hook.js';
import { HANDLER_METADATA_KEYS, handlerMetadataKeys, type HandlerMetadataKeys } from './scope-initializers/handler-metadata-keys.js';
import { HttpServerDrain } from './scope-initializers/http-server.drain.js';
import { TransactionalExplorer } from './transaction/transactional.explorer.js';

/**
 * Imported once per application by every `PoolModule.forRoot*()`: holds the
 * registry of datasources, the public reader of their statistics, the
 * scoping of connections to HTTP requests and to message handlers (RPC,
 * WebSocket), the shutdown drain of the HTTP server, and the bootstrap
 * check of `@Transactional()`.
 */
@Global()
@Module({
  imports: [DiscoveryModule],
  providers: [
    DatasourceRegistry,
    PoolStatsService,
    TransactionalExplorer,
    // Async, so the optional Nest packages can be imported before the constructor below runs.
    { provide: HANDLER_METADATA_KEYS, useFactory: handlerMetadataKeys },
  ],
  exports: [DatasourceRegistry, PoolStatsService],
})
export class PoolCoreModule implements NestModule {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly registry: DatasourceRegistry,
    discovery: DiscoveryService,
    scanner: MetadataScanner,
    @Inject(HANDLER_METADATA_KEYS) handlerKeys: HandlerMetadataKeys,
  ) {
    // Here, as providers are created: before connectMicroservice() or the router build the handlers.
    addHandlerInterceptors(discovery, scanner, handlerKeys);
  }

  // Nest calls configure() in HTTP applications only, before it mounts any
  // module's middleware and registers the routes.
  configure(): void {
    const adapter = this.adapterHost.httpAdapter;
    if (!adapter) return;
    // At shutdown the server stops accepting and its requests finish before the pools close.
    const drain = HttpServerDrain.watch(adapter.getHttpServer());
    if (drain) this.registry.drainFirst((drainUntil) => drain.drain(drainUntil));
    if (!scopeRequests(adapter)) return;
    releaseOnAnswer(adapter, drain);
  }
}
