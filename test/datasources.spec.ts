import { Controller, Get, Injectable, type INestApplication } from '@nestjs/common';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { getPoolToken, InjectConnection, InjectPool, PoolConnection, PoolModule } from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { createHttpApp } from './support/http-app.js';

@Injectable()
class ReportService {
  constructor(
    @InjectConnection() private readonly main: PoolConnection,
    @InjectConnection('reports') private readonly reports: PoolConnection,
    @InjectPool('reports') readonly reportsPool: Pool,
  ) {}

  async databases(): Promise<Record<string, unknown>> {
    const sql = 'SELECT current_database() AS db, pg_backend_pid() AS pid';
    const [main, reports] = await Promise.all([this.main.query(sql), this.reports.query(sql)]);
    const again = await this.reports.query(sql);
    return { main: main.rows[0], reports: reports.rows[0], reportsAgain: again.rows[0], names: [this.main.name, this.reports.name] };
  }
}

@Controller()
class ReportController {
  constructor(private readonly service: ReportService) {}
  @Get('databases')
  databases(): Promise<Record<string, unknown>> {
    return this.service.databases();
  }
}

describe('named datasources', () => {
  let main: TestDatabase;
  let reports: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    [main, reports] = await Promise.all([createTestDatabase('main'), createTestDatabase('reports')]);
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot(main.options), PoolModule.forRoot({ ...reports.options, name: 'reports' })],
        controllers: [ReportController],
        providers: [ReportService],
      },
      'express',
    );
  });

  afterAll(async () => {
    await app?.close();
    await Promise.all([main?.drop(), reports?.drop()]);
  });

  it('runs each query on its own datasource, one client of each per request, all released', async () => {
    const { body } = await supertest(app.getHttpServer()).get('/databases').expect(200);
    expect(body.main.db).toBe(main.name);
    expect(body.reports.db).toBe(reports.name);
    expect(body.reportsAgain.pid).toBe(body.reports.pid);
    expect(body.names).toEqual(['default', 'reports']);
    for (const name of ['default', 'reports']) {
      const pool = app.get<Pool>(getPoolToken(name));
      expect(pool.totalCount - pool.idleCount).toBe(0);
    }
  });

  it('injects the pg.Pool of the named datasource', async () => {
    const { rows } = await app.get(ReportService).reportsPool.query('SELECT current_database() AS db');
    expect(rows[0].db).toBe(reports.name);
  });
});
