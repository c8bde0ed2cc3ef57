import { Controller, Get, Header, Module } from '@nestjs/common';
import { PoolMetricsModule } from 'nestjs-pg-pool/metrics';
import { register, Registry } from 'prom-client';

@Controller('metrics')
class MetricsController {
  @Get()
  @Header('Content-Type', Registry.PROMETHEUS_CONTENT_TYPE)
  scrape(): Promise<string> {
    return register.metrics();
  }
}

@Module({ imports: [PoolMetricsModule.forRoot()], controllers: [MetricsController] })
export class MetricsModule {}
