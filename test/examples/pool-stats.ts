import { Injectable } from '@nestjs/common';
import { PoolStatsService } from 'nestjs-pg-pool';

@Injectable()
export class PoolReport {
  constructor(private readonly stats: PoolStatsService) {}

  busiest() {
    return this.stats.all().sort((a, b) => b.inUse / b.max - a.inUse / a.max)[0];
  }
  defaultWaiting() {
    return this.stats.get().waiting; // or get('reports')
  }
}
