import { Global, Module, type MiddlewareConsumer, type NestModule } from '@nestjs/common';
import { DiscoveryModule, DiscoveryService, HttpAdapterHost, MetadataScanner } from '@nestjs/core';
import { DatasourceRegistry } from './datasource/datasource.registry.js';
import { PoolStatsService } from './datasource/pool-stats.service.js';
import { handBackOnAnswer } from './scope-initializers/connection-scope.http-adapter.js';
import { addHandlerInterceptors } from './scope-initializers/connection-scope.handler-interceptors.js';
import { scopeHttpRequests } from './scope-initializers/connection-scope.http-server.js';
import { scopePlatformRequests } from './scope-initializers/platform-scoping.js';
import { TransactionalExplorer } from './transaction/transactional.explorer.js';

/**
 * Imported once per application by every `PoolModule.forRoot*()`: holds the
 * registry of datasources, the public reader of their statistics, the
 * scoping of connections to HTTP requests and to message handlers (RPC,
 * WebSocket), and the bootstrap check of `@Transactional()`.
 */
@Global()
@Module({
  imports: [DiscoveryModule],
  providers: [
    DatasourceRegistry,
    PoolStatsService,
    TransactionalExplorer,
  ],
  exports: [DatasourceRegistry, PoolStatsService],
})
export class PoolCoreModule implements NestModule {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    discovery: DiscoveryService,
    scanner: MetadataScanner,
  ) {
    // Here, as providers are created: before connectMicroservice() or the router build the handlers.
    addHandlerInterceptors(discovery, scanner);
  }

  // Nest calls configure() in HTTP applications only, before it mounts any
  // module's middleware and registers the routes.
  configure(consumer: MiddlewareConsumer): void {
    const adapter = this.adapterHost.httpAdapter;
    if (!adapter || !scopePlatformRequests(adapter, consumer)) return;
    scopeHttpRequests(adapter.getHttpServer());
    handBackOnAnswer(adapter);
  }
}
