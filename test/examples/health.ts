import { Controller, Get, Module } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { PoolHealthIndicator } from 'nestjs-pg-pool/health';

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly pools: PoolHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([
      () => this.pools.pingCheck('database', { timeout: 1000, cacheFor: 1000 }),
      () => this.pools.poolCheck('database_pool', { maxUtilization: 0.9 }),
      () => this.pools.pingCheck('reports', { name: 'reports' }),
    ]);
  }
}

@Module({ imports: [TerminusModule], controllers: [HealthController], providers: [PoolHealthIndicator] })
export class HealthModule {}
