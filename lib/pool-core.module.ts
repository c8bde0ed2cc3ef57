import { Global, Module, type NestModule, type OnModuleInit } from '@nestjs/common';
import { APP_INTERCEPTOR, DiscoveryModule, DiscoveryService, HttpAdapterHost, MetadataScanner } from '@nestjs/core';
import { DatasourceRegistry } from './datasource/datasource.registry.js';
import { PoolStatsService } from './datasource/pool-stats.service.js';
import { ConnectionScopeInterceptor } from './scope-initializers/connection-scope.interceptor.js';
import { handBackOnAnswer } from './scope-initializers/connection-scope.http-adapter.js';
import { addHandlerInterceptors } from './scope-initializers/connection-scope.handler-interceptors.js';
import { scopeHttpRequests } from './scope-initializers/connection-scope.http-server.js';
import { scopePlatformRequests } from './scope-initializers/platform-scoping.js';
import { TransactionalExplorer } from './transaction/transactional.explorer.js';

/**
 * Imported once per application by every `PoolModule.forRoot*()`: holds the
 * registry of datasources, the public reader of their statistics, the
 * scoping of connections to the HTTP server's requests, the global
 * interceptor that scopes them to every other handler (RPC, WebSocket), and
 * the bootstrap check of `@Transactional()`.
 */
@Global()
@Module({
  imports: [DiscoveryModule],
  providers: [
    DatasourceRegistry,
    PoolStatsService,
    TransactionalExplorer,
    ConnectionScopeInterceptor,
    { provide: APP_INTERCEPTOR, useExisting: ConnectionScopeInterceptor },
  ],
  exports: [DatasourceRegistry, PoolStatsService],
})
export class PoolCoreModule implements NestModule, OnModuleInit {
  constructor(
    private readonly interceptor: ConnectionScopeInterceptor,
    private readonly adapterHost: HttpAdapterHost,
    discovery: DiscoveryService,
    scanner: MetadataScanner,
  ) {
    // Here, as providers are created: before connectMicroservice() or the router build the handlers.
    addHandlerInterceptors(discovery, scanner);
  }

  // Nest calls configure() in HTTP applications only, last before it
  // registers the HTTP routes (gateways are already connected), and
  // onModuleInit() right after: the routes built in between serve requests
  // the platform's extension points scope, and need no interceptor.
  configure(): void {
    const adapter = this.adapterHost.httpAdapter;
    if (!adapter || !scopePlatformRequests(adapter)) return;
    scopeHttpRequests(adapter.getHttpServer());
    handBackOnAnswer(adapter);
    this.interceptor.coverHttpRoutes(true);
  }

  onModuleInit(): void {
    this.interceptor.coverHttpRoutes(false);
  }
}
