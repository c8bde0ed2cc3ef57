import { Global, Module } from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { DatasourceRegistry } from './datasource/datasource.registry.js';
import { PoolStatsService } from './datasource/pool-stats.service.js';
import { ConnectionScopeInterceptor } from './scope-initializers/connection-scope.interceptor.js';

/**
 * Imported once per application by every `PoolModule.forRoot*()`: holds the
 * registry of datasources, the public reader of their statistics, and the
 * one global interceptor that scopes connections to requests.
 */
@Global()
@Module({
  providers: [DatasourceRegistry, PoolStatsService, { provide: APP_INTERCEPTOR, useClass: ConnectionScopeInterceptor }],
  exports: [DatasourceRegistry, PoolStatsService],
})
export class PoolCoreModule {}
