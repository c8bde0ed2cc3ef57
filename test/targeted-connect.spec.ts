import { Test } from '@nestjs/testing';
import type { INestApplicationContext } from '@nestjs/common';
import type { Pool } from 'pg';
import { ConnectionScope, getConnectionToken, getPoolToken, PoolError, PoolModule, type PoolConnection } from '../lib/index.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { optionsVia, serverAddress } from './support/connection-url.js';
import { adminQuery, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { TcpProxy } from './support/tcp-proxy.js';

// A datasource with targetSessionAttrs opens each connection in two steps (pg's connect, then the
// check of the server's role) before pg-pool, which listens for the client's 'error', hears of it.
// A server that ends the session between the two, as a failover does, must fail that connect, not
// emit 'error' to nobody, which would end the process.
describe('a targeted connection whose session ends as its startup completes', () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let app: INestApplicationContext;

  beforeAll(async () => {
    db = await createTestDatabase('targeted_connect');
    proxy = await TcpProxy.start(serverAddress());
  });
  afterAll(async () => {
    await app?.close();
    await proxy?.close();
    await db?.drop();
  });

  it('fails that acquisition with a typed error; the next one gets a new connection', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...optionsVia(db.options, proxy.address), targetSessionAttrs: 'read-write', retryAttempts: 0, max: 1 })],
    }).compile();
    moduleRef.useLogger(new CapturingLogger());
    app = await moduleRef.init();
    const connection = app.get<PoolConnection>(getConnectionToken());
    // The startup check's connection may be idle in the pool: it goes, so that the next query opens one.
    const pool = app.get<Pool>(getPoolToken());
    await adminQuery('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name]);
    await waitFor(async () => (pool.totalCount === 0 ? true : undefined), 'the idle connection to be removed');
    const accepted = proxy.accepted;
    proxy.terminateNextSessionAtStartup();
    const failed = await ConnectionScope.run(() => connection.query('SELECT 1')).catch((error: unknown) => error);
    expect(proxy.accepted).toBe(accepted + 1);
    expect(failed).toBeInstanceOf(PoolError);
    await expect(ConnectionScope.run(() => connection.query<{ one: number }>('SELECT 1 AS one'))).resolves.toMatchObject({ rows: [{ one: 1 }] });
  });
});
