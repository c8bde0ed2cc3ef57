import type { INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Pool } from 'pg';
import { ConnectionScope, getConnectionToken, getPoolToken, PoolClosedError, PoolConnection, PoolModule } from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

// The module tells pg-pool's refusals apart by the pool's state, not by their
// messages. Timeouts (exhausted pool, silent server) are covered in
// reliability.spec.ts and pool-stats.spec.ts; here, a pool the application ended.

describe('a pool ended by the application', () => {
  let db: TestDatabase;
  let app: INestApplicationContext;
  beforeAll(async () => (db = await createTestDatabase('acquire_errors')));
  afterAll(() => db?.drop());
  afterEach(() => app?.close());

  it('refuses new clients with PoolClosedError', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot(db.options)] }).compile();
    moduleRef.useLogger(false);
    app = await moduleRef.init();
    const pool = app.get<Pool>(getPoolToken());
    const connection = app.get<PoolConnection>(getConnectionToken());
    await pool.end();
    await expect(ConnectionScope.run(() => connection.query('SELECT 1'))).rejects.toBeInstanceOf(PoolClosedError);
  });
});
