import { Global, Module } from '@nestjs/common';
import { APP_INTERCEPTOR, DiscoveryModule } from '@nestjs/core';
import { DatasourceRegistry } from './datasource/datasource.registry.js';
import { ConnectionScopeInterceptor } from './scope-initializers/connection-scope.interceptor.js';
import { TransactionalExplorer } from './transaction/transactional.explorer.js';

/**
 * Imported once per application by every `PoolModule.forRoot*()`: holds the
 * registry of datasources, the one global interceptor that scopes
 * connections to requests, and the bootstrap check of `@Transactional()`.
 */
@Global()
@Module({
  imports: [DiscoveryModule],
  providers: [DatasourceRegistry, TransactionalExplorer, { provide: APP_INTERCEPTOR, useClass: ConnectionScopeInterceptor }],
  exports: [DatasourceRegistry],
})
export class PoolCoreModule {}
