import { Injectable, Module } from '@nestjs/common';
import type { Pool } from 'pg';
import { InjectConnection, InjectPool, PoolConnection, PoolModule } from 'nestjs-pg-pool';

@Injectable()
export class ReportsService {
  constructor(
    @InjectConnection() private readonly main: PoolConnection,
    @InjectConnection('reports') private readonly reports: PoolConnection,
    @InjectPool('reports') readonly reportsPool: Pool,
  ) {}

  async copyTotals(): Promise<number> {
    const { rows } = await this.main.query<{ total: string }>('SELECT count(*) AS total FROM orders');
    await this.reports.query('INSERT INTO totals (orders) VALUES ($1)', [Number(rows[0].total)]);
    return Number(rows[0].total);
  }
}

@Module({
  imports: [
    PoolModule.forRoot({ connectionString: process.env.DATABASE_URL }),
    PoolModule.forRoot({ name: 'reports', connectionString: process.env.REPORTS_DATABASE_URL, max: 4 }),
  ],
  providers: [ReportsService],
})
export class AppModule {}
