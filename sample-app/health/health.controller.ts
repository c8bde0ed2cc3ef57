import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService, type HealthCheckResult } from '@nestjs/terminus';
import { PoolHealthIndicator } from '../../lib/health/index.js';
import { DATASOURCES } from '../app.constants.js';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly pools: PoolHealthIndicator,
  ) {}

  /**
   * 200 when every datasource answers (`degraded` still 200), 503 naming the
   * ones that do not. A ping result is reused for a second, so a /health
   * polled hard still costs each database at most one query a second.
   */
  @Get()
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check(
      DATASOURCES.flatMap((name) => [
        () => this.pools.pingCheck(name, { name, timeout: 1000, cacheFor: 1000 }),
        () => this.pools.poolCheck(`${name}_pool`, { name }),
      ]),
    );
  }
}
