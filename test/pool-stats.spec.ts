import type { INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Pool } from 'pg';
import {
  DatasourceNotFoundError,
  getConnectionToken,
  getPoolToken,
  PoolConnection,
  PoolExhaustedError,
  PoolModule,
  PoolStatsService,
  POOL_STATS_BUCKETS,
} from '../lib/index.js';
import { adminQuery, createTestDatabase, type TestDatabase } from './support/database.js';
import { holdClient } from './support/hold-client.js';

const REPLICA = 'default (replica 1)';

describe('PoolStatsService', () => {
  let db: TestDatabase;
  let app: INestApplicationContext;
  let stats: PoolStatsService;
  let connection: PoolConnection;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('stats');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 2, connectionTimeoutMillis: 200 })],
    }).compile();
    moduleRef.useLogger(false);
    app = await moduleRef.init();
    stats = app.get(PoolStatsService);
    connection = app.get(getConnectionToken());
    pool = app.get(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('counts each connection lent and handed back, with its wait and hold time', async () => {
    const before = stats.get();
    await Promise.all([connection.query('SELECT 1'), connection.query('SELECT pg_sleep(0.02)')]);
    const after = stats.get();
    expect(after.datasource).toBe('default');
    expect(after.acquired - before.acquired).toBe(2);
    expect(after.released - before.released).toBe(2);
    expect(after.acquireWait.count - before.acquireWait.count).toBe(2);
    expect(after.holdTime.count - before.holdTime.count).toBe(2);
    // The pg_sleep client was held at least 20 ms.
    expect(after.holdTime.sum - before.holdTime.sum).toBeGreaterThanOrEqual(0.02);
    expect(after.created).toBeGreaterThanOrEqual(1);
    expect({ inUse: after.inUse, waiting: after.waiting, max: after.max, min: after.min }).toEqual({ inUse: 0, waiting: 0, max: 2, min: 0 });
  });

  it('gives cumulative buckets on the fixed bounds', () => {
    const { holdTime } = stats.get();
    expect(holdTime.buckets.map((bucket) => bucket.le)).toEqual(POOL_STATS_BUCKETS);
    const counts = holdTime.buckets.map((bucket) => bucket.count);
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(counts[counts.length - 1]).toBeLessThanOrEqual(holdTime.count);
    // Every hold of this suite is far below the last bound (30 s).
    expect(counts[counts.length - 1]).toBe(holdTime.count);
  });

  it('shows held connections as in use, queued requests as waiting, and counts acquire timeouts', async () => {
    const holders = [await holdClient(connection), await holdClient(connection)];
    expect(stats.get()).toMatchObject({ total: 2, idle: 0, inUse: 2 });
    const timeoutsBefore = stats.get().acquireTimeouts;
    const queued = connection.query('SELECT 1');
    expect(stats.get().waiting).toBe(1);
    await expect(queued).rejects.toBeInstanceOf(PoolExhaustedError);
    expect(stats.get()).toMatchObject({ waiting: 0, acquireTimeouts: timeoutsBefore + 1 });
    await Promise.all(holders.map((holder) => holder.release()));
    expect(stats.get()).toMatchObject({ inUse: 0, idle: 2 });
  });

  it('counts a connection that breaks while idle as an error and as destroyed', async () => {
    const holder = await holdClient(connection);
    await holder.release();
    const before = stats.get();
    const removed = new Promise<void>((resolve) => pool.once('remove', () => resolve()));
    await adminQuery('SELECT pg_terminate_backend($1)', [holder.pid]);
    await removed;
    const after = stats.get();
    expect(after.errors - before.errors).toBe(1);
    expect(after.destroyed - before.destroyed).toBe(1);
  });

  it('lists every datasource and refuses unknown names', () => {
    expect(stats.all().map((s) => s.datasource)).toEqual(['default']);
    expect(() => stats.get('missing')).toThrow(DatasourceNotFoundError);
  });
});

describe('PoolStatsService with a read replica', () => {
  let db: TestDatabase;
  let app: INestApplicationContext;
  let stats: PoolStatsService;
  let replicaReads: PoolConnection;

  beforeAll(async () => {
    db = await createTestDatabase('stats_replica');
    // The replica is a second pool to the same server: a pool is what is measured, not what it connects to.
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 3, connectionTimeoutMillis: 200, replicas: [{ ...db.options, max: 1 }] })],
    }).compile();
    moduleRef.useLogger(false);
    app = await moduleRef.init();
    stats = app.get(PoolStatsService);
    replicaReads = app.get(getConnectionToken('default', { replica: true }));
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it("lists each replica pool after its datasource, under the replica's name, with its own bounds", () => {
    expect(stats.all().map(({ datasource, replicaOf, max }) => ({ datasource, replicaOf, max }))).toEqual([
      { datasource: 'default', replicaOf: undefined, max: 3 },
      { datasource: REPLICA, replicaOf: 'default', max: 1 },
    ]);
    expect(stats.get()).not.toHaveProperty('replicaOf');
  });

  it("reads a saturated replica's figures by its name, apart from the primary's", async () => {
    const primaryBefore = stats.get();
    const replicaBefore = stats.get(REPLICA);
    const held = await holdClient(replicaReads);
    expect(stats.get(REPLICA)).toMatchObject({ total: 1, idle: 0, inUse: 1, waiting: 0 });
    expect(stats.get()).toMatchObject({ inUse: 0, waiting: 0 });

    // The replica's one connection is held: this read queues there, times out, and is answered by the primary.
    const read = replicaReads.query('SELECT 1');
    expect(stats.get(REPLICA).waiting).toBe(1);
    expect(stats.get().waiting).toBe(0);
    await read;
    await held.release();

    const primary = stats.get();
    const replica = stats.get(REPLICA);
    expect(replica.acquireTimeouts - replicaBefore.acquireTimeouts).toBe(1);
    expect(primary.acquireTimeouts - primaryBefore.acquireTimeouts).toBe(0);
    expect({ acquired: replica.acquired - replicaBefore.acquired, released: replica.released - replicaBefore.released }).toEqual({ acquired: 1, released: 1 });
    expect({ acquired: primary.acquired - primaryBefore.acquired, released: primary.released - primaryBefore.released }).toEqual({ acquired: 1, released: 1 });
    // The replica's hold lasted the primary's whole read (200 ms of queueing and more).
    expect(replica.holdTime.sum - replicaBefore.holdTime.sum).toBeGreaterThanOrEqual(0.2);
  });

  it('refuses unknown replica names, listing the replica pools among the known ones', () => {
    expect(() => stats.get('default (replica 2)')).toThrow(DatasourceNotFoundError);
    expect(() => stats.get('default (replica 2)')).toThrow(/"default \(replica 1\)"/);
  });
});
