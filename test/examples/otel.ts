import { Module } from '@nestjs/common';
import { PoolModule } from 'nestjs-pg-pool';
import { PoolTelemetryModule } from 'nestjs-pg-pool/otel';

@Module({
  imports: [PoolModule.forRoot({ connectionString: process.env.DATABASE_URL }), PoolTelemetryModule.forRoot()],
})
export class AppModule {}
