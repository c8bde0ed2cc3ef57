import { Controller, Get, Injectable, Post, type INestApplication } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { sql } from 'drizzle-orm';
import { DrizzleModule, InjectDrizzle, type DrizzleDatabase, type DrizzleTransaction } from '../lib/drizzle/index.js';
import { PoolHealthIndicator } from '../lib/health/index.js';
import { getPoolToken, InjectConnection, PoolConnection, PoolModule, ReadFromReplica } from '../lib/index.js';
import { waitFor } from './support/database.js';
import { createHttpApp } from './support/http-app.js';
import { PgCluster } from './support/pg-cluster.js';
import { whenAvailable } from './support/services.js';

const WHERE = 'SELECT pg_is_in_recovery() AS replica';

@Injectable()
class ItemsService {
  constructor(
    @InjectConnection() private readonly primary: PoolConnection,
    @InjectConnection('default', { replica: true }) readonly replica: PoolConnection,
  ) {}

  async whereReplicaConnectionReads(): Promise<boolean> {
    return (await this.replica.query<{ replica: boolean }>(WHERE)).rows[0].replica;
  }

  async wherePrimaryConnectionReads(): Promise<boolean> {
    return (await this.primary.query<{ replica: boolean }>(WHERE)).rows[0].replica;
  }

  @ReadFromReplica()
  async whereMarkedMethodReads(): Promise<boolean> {
    return (await this.primary.query<{ replica: boolean }>(WHERE)).rows[0].replica;
  }

  /** A write, then reads in the same request: they must see the write. */
  async writeThenRead(): Promise<{ replica: boolean; seen: number }> {
    const { rows } = await this.replica.query<{ id: number }>("INSERT INTO items (name) VALUES ('new') RETURNING id");
    const seen = await this.replica.query<{ n: number }>('SELECT count(*)::int AS n FROM items WHERE id = $1', [rows[0].id]);
    return { replica: await this.whereReplicaConnectionReads(), seen: seen.rows[0].n };
  }

  async readInTransaction(): Promise<boolean> {
    return this.primary.transaction(async () => this.whereReplicaConnectionReads());
  }
}

/** The same reads through Drizzle: its databases go through the connections above. */
@Injectable()
class DrizzleItems {
  constructor(
    @InjectDrizzle() private readonly db: DrizzleDatabase,
    @InjectDrizzle('default', { replica: true }) private readonly replica: DrizzleDatabase,
  ) {}

  async whereReads(): Promise<{ primary: boolean; replica: boolean; marked: boolean; inTransaction: boolean }> {
    const where = async (db: DrizzleDatabase | DrizzleTransaction): Promise<boolean> => (await db.execute<{ replica: boolean }>(sql.raw(WHERE))).rows[0].replica;
    return {
      primary: await where(this.db),
      replica: await where(this.replica),
      marked: await this.marked(where),
      inTransaction: await this.replica.transaction((tx) => where(tx)),
    };
  }

  @ReadFromReplica()
  marked(where: (db: DrizzleDatabase | DrizzleTransaction) => Promise<boolean>): Promise<boolean> {
    return where(this.db);
  }
}

@Controller()
class ItemsController {
  constructor(
    private readonly items: ItemsService,
    private readonly drizzleItems: DrizzleItems,
  ) {}

  @Get('replica-connection')
  replicaConnection(): Promise<boolean> {
    return this.items.whereReplicaConnectionReads();
  }

  @Get('primary-connection')
  primaryConnection(): Promise<boolean> {
    return this.items.wherePrimaryConnectionReads();
  }

  @Get('marked')
  marked(): Promise<boolean> {
    return this.items.whereMarkedMethodReads();
  }

  @Post('write-then-read')
  writeThenRead(): Promise<unknown> {
    return this.items.writeThenRead();
  }

  @Get('in-transaction')
  inTransaction(): Promise<boolean> {
    return this.items.readInTransaction();
  }

  @Get('drizzle')
  drizzle(): Promise<unknown> {
    return this.drizzleItems.whereReads();
  }
}

describe('read replicas (own primary and streaming replica)', () => {
  const test = whenAvailable('pg_basebackup', 'read replicas');
  let primary: PgCluster;
  let replica: PgCluster;
  let app: INestApplication;

  beforeAll(async () => {
    primary = await PgCluster.create();
    await primary.query('postgres', "CREATE TABLE items (id serial PRIMARY KEY, name text); INSERT INTO items (name) VALUES ('first')");
    replica = await PgCluster.replicaOf(primary);
    await waitFor(async () => ((await replica.query('postgres', 'SELECT 1 FROM items')).rowCount ? true : undefined), 'the replica to catch up');
    app = await createHttpApp(
      {
        imports: [
          PoolModule.forRoot({ ...primary.options(), max: 4, replicas: [replica.options()], replicaRetryMillis: 100 }),
          TerminusModule.forRoot({ logger: false }),
          DrizzleModule.forRoot(),
        ],
        controllers: [ItemsController],
        providers: [ItemsService, DrizzleItems, PoolHealthIndicator],
      },
      'express',
    );
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await replica?.destroy();
    await primary?.destroy();
  });

  const http = (): supertest.Agent => supertest.agent(app.getHttpServer());
  const checkedOut = (): number => {
    const pool = app.get<Pool>(getPoolToken());
    return pool.totalCount - pool.idleCount;
  };

  test('sends reads of a replica connection and of @ReadFromReplica() methods to the replica, others to the primary', async () => {
    await http().get('/replica-connection').expect(200, 'true');
    await http().get('/marked').expect(200, 'true');
    await http().get('/primary-connection').expect(200, 'false');
    expect(checkedOut()).toBe(0);
  });

  test('sends writes to the primary and keeps the request reading its own writes there', async () => {
    const { body } = await http().post('/write-then-read').expect(201);
    expect(body).toEqual({ replica: false, seen: 1 });
  });

  test('reads inside a transaction from the primary', async () => {
    await http().get('/in-transaction').expect(200, 'false');
    expect(checkedOut()).toBe(0);
  });

  test("routes Drizzle's reads as the connections': its replica twin and @ReadFromReplica() to the replica, transactions to the primary", async () => {
    const { body } = await http().get('/drizzle').expect(200);
    expect(body).toEqual({ primary: false, replica: true, marked: true, inTransaction: false });
    expect(checkedOut()).toBe(0);
  });

  test('reports the replicas as up', async () => {
    const result = await app.get(PoolHealthIndicator).replicaCheck('replicas');
    expect(result.replicas).toMatchObject({ status: 'up', replicas: [{ name: 'default (replica 1)', up: true }] });
  });

  test('falls back to the primary while the replica is down, shows it in health, and returns to it afterwards', async () => {
    await replica.stop('fast');
    await http().get('/replica-connection').expect(200, 'false');
    await http().get('/marked').expect(200, 'false');
    const down = await app.get(PoolHealthIndicator).replicaCheck('replicas');
    expect(down.replicas).toMatchObject({ status: 'degraded', replicas: [{ up: false, reason: expect.any(String) }] });
    expect(JSON.stringify(down)).not.toMatch(/password/i);

    await replica.start();
    await waitFor(async () => {
      const { replicas } = await app.get(PoolHealthIndicator).replicaCheck('replicas');
      return replicas.status === 'up' ? true : undefined;
    }, 'the replica to be back in rotation');
    await http().get('/replica-connection').expect(200, 'true');
    expect(checkedOut()).toBe(0);
  });
});
