import { Global, Module, RequestMethod, type MiddlewareConsumer, type NestModule, type OnModuleInit } from '@nestjs/common';
import { APP_INTERCEPTOR, DiscoveryModule } from '@nestjs/core';
import { DatasourceRegistry } from './datasource/datasource.registry.js';
import { PoolStatsService } from './datasource/pool-stats.service.js';
import { ConnectionScopeInterceptor } from './scope-initializers/connection-scope.interceptor.js';
import { ConnectionScopeMiddleware } from './scope-initializers/connection-scope.middleware.js';
import { TransactionalExplorer } from './transaction/transactional.explorer.js';

/**
 * Imported once per application by every `PoolModule.forRoot*()`: holds the
 * registry of datasources, the public reader of their statistics, the
 * middleware that scopes connections to HTTP requests, the global
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
  constructor(private readonly interceptor: ConnectionScopeInterceptor) {}

  // Nest calls configure() last before it registers the HTTP routes (gateways
  // are already connected) and onModuleInit() right after: the routes built
  // in between are all behind the middleware and need no interceptor.
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(ConnectionScopeMiddleware).forRoutes({ path: '*', method: RequestMethod.ALL });
    this.interceptor.coverHttpRoutes(true);
  }

  onModuleInit(): void {
    this.interceptor.coverHttpRoutes(false);
  }
}
