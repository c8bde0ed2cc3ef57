import { Controller, Get, Injectable, type INestApplication } from '@nestjs/common';
import { sql, type Generated, type Kysely, type Transaction } from 'kysely';
import pg, { type Pool } from 'pg';
import Cursor from 'pg-cursor';
import supertest from 'supertest';
import {
  ConnectionScope,
  getConnectionToken,
  getPoolToken,
  InjectConnection,
  InvalidTransactionOptionsError,
  NoConnectionScopeError,
  PoolConnection,
  PoolModule,
  ReadFromReplica,
  RequestAbandonedError,
  Transactional,
  TransactionFinishedError,
} from '../lib/index.js';
import { createKysely, getKyselyToken, InjectKysely, KyselyModule, UnsupportedKyselyFeatureError } from '../lib/kysely/index.js';
import { AccountsService, AuditService, TransfersService } from './examples/kysely.js';
import { backendStates, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { createHttpApp, requestToHangUp } from './support/http-app.js';
import { Probe } from './support/probe.js';
import { expectNoOpenTransaction } from './support/transactions.js';

interface Database {
  entries: { id: Generated<number>; label: string; amount: number };
}
type Db = Kysely<Database>;

/** The backend a statement ran on and its transaction's id (null outside a transaction). */
interface Seen {
  pid: number;
  txid: string | null;
}
const SEEN = sql<Seen>`SELECT pg_backend_pid() AS pid, txid_current()::text AS txid`;
const seen = async (db: Db): Promise<Seen> => (await SEEN.execute(db)).rows[0];

// The hung-up request's transaction waits for this advisory lock, held by the test.
const LOCK = 26026;

@Injectable()
class Ledger {
  constructor(
    @InjectKysely() private readonly db: Db,
    @InjectConnection() private readonly connection: PoolConnection,
  ) {}

  /** What @InjectConnection() sees, in a transaction when one runs. */
  async seenByConnection(): Promise<Seen> {
    return (await this.connection.query<Seen>('SELECT pg_backend_pid() AS pid, txid_current()::text AS txid')).rows[0];
  }

  async addByConnection(label: string): Promise<void> {
    await this.connection.query('INSERT INTO entries (label, amount) VALUES ($1, 0)', [label]);
  }

  @Transactional()
  async joined(label: string): Promise<Seen> {
    await this.addByConnection(label);
    return this.seenByConnection();
  }

  /** A Kysely transaction inside @Transactional(): a savepoint, whose throw undoes its own part. */
  @Transactional()
  async outerWithFailingKysely(): Promise<{ outer: Seen; inner: Seen }> {
    await this.addByConnection('outer');
    const outer = await this.seenByConnection();
    let inner: Seen | undefined;
    await this.db
      .transaction()
      .execute(async (trx) => {
        await trx.insertInto('entries').values({ label: 'inner', amount: 1 }).execute();
        inner = await seen(trx);
        throw new Error('inner failed');
      })
      .catch(() => undefined);
    return { outer, inner: inner! };
  }

  /** A Kysely transaction that succeeded inside @Transactional() is undone with it. */
  @Transactional()
  async failAfterKysely(): Promise<void> {
    await this.db.transaction().execute((trx) => trx.insertInto('entries').values({ label: 'released', amount: 1 }).execute());
    throw new Error('outer failed');
  }
}

const applicationName = async (db: Db): Promise<string> =>
  (await sql<{ name: string }>`SELECT current_setting('application_name') AS name`.execute(db)).rows[0].name;

/** On the datasource 'routed', whose replica is the same server under another application_name. */
@Injectable()
class Reports {
  constructor(@InjectKysely('routed') private readonly db: Db) {}

  @ReadFromReplica()
  readOnReplica(): Promise<string> {
    return applicationName(this.db);
  }

  read(): Promise<string> {
    return applicationName(this.db);
  }
}

@Controller()
class KyselyController {
  constructor(
    @InjectKysely() private readonly db: Db,
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly probe: Probe,
  ) {}

  @Get('pids')
  async pids(): Promise<{ kysely: number; connection: number; streamed: number[] }> {
    const { rows } = await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const kysely = (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(this.db)).rows[0].pid;
    const streamed: number[] = [];
    const cursor = this.db.selectNoFrom([sql<number>`pg_backend_pid()`.as('pid'), sql<number>`generate_series(1, 5)`.as('n')]).stream(2);
    for await (const row of cursor) streamed.push(row.pid);
    return { kysely, connection: rows[0].pid, streamed };
  }

  /** A transaction whose request hangs up while it waits for the test's lock. */
  @Get('hang')
  hang(): Promise<void> {
    return this.probe.follow(() =>
      this.db.transaction().execute(async (trx) => {
        await trx.insertInto('entries').values({ label: 'abandoned', amount: 1 }).execute();
        this.probe.held.resolve((await seen(trx)).pid);
        await sql`SELECT pg_advisory_xact_lock(${LOCK})`.execute(trx);
      }),
    );
  }
}

describe('Kysely on the request connection', () => {
  let database: TestDatabase;
  let app: INestApplication;
  let pool: Pool;
  let db: Db;
  let ledger: Ledger;
  const probe = new Probe();

  beforeAll(async () => {
    database = await createTestDatabase('kysely');
    app = await createHttpApp(
      {
        imports: [
          PoolModule.forRoot({ ...database.options, max: 3 }),
          KyselyModule.forRoot({ cursor: Cursor }),
          PoolModule.forRoot({
            ...database.options,
            name: 'routed',
            max: 1,
            application_name: 'kysely-primary',
            replicas: [{ ...database.options, max: 1, application_name: 'kysely-replica' }],
          }),
          KyselyModule.forRoot({ name: 'routed' }),
        ],
        controllers: [KyselyController],
        providers: [Ledger, Reports, { provide: Probe, useValue: probe }, AccountsService, AuditService, TransfersService],
      },
      'express',
    );
    pool = app.get(getPoolToken());
    db = app.get(getKyselyToken());
    ledger = app.get(Ledger);
    await pool.query(`
      CREATE TABLE entries (id serial PRIMARY KEY, label text NOT NULL, amount int NOT NULL);
      CREATE TABLE accounts (id serial PRIMARY KEY, owner text NOT NULL, balance int NOT NULL);
      CREATE TABLE audit (id serial PRIMARY KEY, event text NOT NULL);`);
  });

  beforeEach(() => pool.query('TRUNCATE entries, accounts, audit'));
  afterEach(() => expectNoOpenTransaction(pool, database.name));

  afterAll(async () => {
    await app?.close();
    await database?.drop();
  });

  const labels = async (): Promise<string[]> => (await db.selectFrom('entries').select('label').orderBy('label').execute()).map((row) => row.label);

  it('runs on the backend of the request, as @InjectConnection() does, streaming included', async () => {
    const { body } = await supertest(app.getHttpServer()).get('/pids').expect(200);
    expect(body.kysely).toBe(body.connection);
    expect(body.streamed).toEqual(Array(5).fill(body.connection));
  });

  it('runs typed queries outside a request, on a client of their own', async () => {
    const inserted = await db.insertInto('entries').values({ label: 'a', amount: 5 }).returning(['id', 'amount']).executeTakeFirstOrThrow();
    const id: number = inserted.id;
    expect(inserted.amount).toBe(5);
    const row = await db.selectFrom('entries').select(['label', 'amount']).where('id', '=', id).executeTakeFirstOrThrow();
    expect(row).toEqual({ label: 'a', amount: 5 });
    const updated = await db.updateTable('entries').set({ amount: 6 }).where('id', '=', id).executeTakeFirstOrThrow();
    expect(updated.numUpdatedRows).toBe(1n);
  });

  it('routes reads under @ReadFromReplica() to a replica, as @InjectConnection() does, on the named datasource', async () => {
    const reports = app.get(Reports);
    expect(await reports.readOnReplica()).toBe('kysely-replica');
    expect(await reports.read()).toBe('kysely-primary');
  });

  it('commits a transaction, and rolls it back when its work throws, with the error untouched', async () => {
    const committed = await db.transaction().execute(async (trx) => {
      await trx.insertInto('entries').values({ label: 'kept', amount: 1 }).execute();
      return seen(trx);
    });
    expect(committed.txid).not.toBeNull();
    const failure = new Error('undo');
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto('entries').values({ label: 'undone', amount: 1 }).execute();
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await labels()).toEqual(['kept']);
  });

  it('nests db.transaction() in a transaction as a savepoint: one transaction id, the inner throw undoes its part alone', async () => {
    const [outer, inner] = await db.transaction().execute(async (trx) => {
      await trx.insertInto('entries').values({ label: 'before', amount: 1 }).execute();
      let innerSeen: Seen | undefined;
      await db
        .transaction()
        .execute(async (nested) => {
          await nested.insertInto('entries').values({ label: 'nested', amount: 1 }).execute();
          innerSeen = await seen(nested);
          throw new Error('nested failed');
        })
        .catch(() => undefined);
      await trx.insertInto('entries').values({ label: 'after', amount: 1 }).execute();
      return [await seen(trx), innerSeen!];
    });
    expect(inner).toEqual(outer);
    expect(await labels()).toEqual(['after', 'before']);
  });

  it('inside @Transactional() is a savepoint of its transaction: one transaction id, its throw undoes its part alone', async () => {
    const { outer, inner } = await ledger.outerWithFailingKysely();
    expect(inner).toEqual(outer);
    expect(await labels()).toEqual(['outer']);
  });

  it('inside @Transactional() commits nothing early: the outer rollback undoes a Kysely transaction that succeeded', async () => {
    await expect(ledger.failAfterKysely()).rejects.toThrow('outer failed');
    expect(await labels()).toEqual([]);
  });

  it('has @Transactional() methods and @InjectConnection() queries called in its work join it', async () => {
    const failure = new Error('undo all');
    let trxSeen: Seen | undefined;
    let joinedSeen: Seen | undefined;
    let connectionSeen: Seen | undefined;
    await expect(
      db.transaction().execute(async (trx) => {
        await trx.insertInto('entries').values({ label: 'kysely', amount: 1 }).execute();
        trxSeen = await seen(trx);
        joinedSeen = await ledger.joined('service');
        connectionSeen = await ledger.seenByConnection();
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(joinedSeen).toEqual(trxSeen);
    expect(connectionSeen).toEqual(trxSeen);
    expect(await labels()).toEqual([]);
  });

  it('keeps the module transaction when called on a copy (withSchema, withPlugin) of the Kysely', async () => {
    const copy = db.withSchema('public').withoutPlugins();
    const [outer, inner] = await db.transaction().execute(async (trx) => [await seen(trx), await copy.transaction().execute((nested) => seen(nested))]);
    expect(inner).toEqual(outer);
  });

  it('takes the isolation level and access mode, and refuses one PostgreSQL lacks', async () => {
    const settings = await db
      .transaction()
      .setIsolationLevel('serializable')
      .setAccessMode('read only')
      .execute(async (trx) => (await sql<{ iso: string; ro: string }>`SELECT current_setting('transaction_isolation') AS iso, current_setting('transaction_read_only') AS ro`.execute(trx)).rows[0]);
    expect(settings).toEqual({ iso: 'serializable', ro: 'on' });
    await expect(db.transaction().setIsolationLevel('snapshot').execute(async () => 1)).rejects.toThrow(InvalidTransactionOptionsError);
  });

  it('refuses a transaction object used after its transaction ended', async () => {
    const kept = await db.transaction().execute(async (trx): Promise<Transaction<Database>> => trx);
    await expect(kept.selectFrom('entries').selectAll().execute()).rejects.toThrow(TransactionFinishedError);
  });

  it('refuses controlled transactions (startTransaction()) before they begin', async () => {
    await expect(db.startTransaction().execute()).rejects.toThrow(UnsupportedKyselyFeatureError);
  });

  it('gives db.connection() one client outside a request', async () => {
    const pids = await db.connection().execute(async (one) => [await seen(one), await seen(one)].map((s) => s.pid));
    expect(pids[1]).toBe(pids[0]);
  });

  it('streams inside a scope, and refuses to outside any or without a cursor class', async () => {
    const rows = await ConnectionScope.run(async () => {
      const all: number[] = [];
      for await (const row of db.selectNoFrom(sql<number>`generate_series(1, 5)`.as('n')).stream(2)) all.push(row.n);
      return all;
    });
    expect(rows).toEqual([1, 2, 3, 4, 5]);
    const stream = db.selectNoFrom(sql<number>`1`.as('n')).stream();
    await expect(stream.next()).rejects.toThrow(NoConnectionScopeError);
    const withoutCursor = createKysely<Database>(app.get<PoolConnection>(getConnectionToken()));
    await expect(ConnectionScope.run(() => withoutCursor.selectNoFrom(sql<number>`1`.as('n')).stream().next())).rejects.toThrow(UnsupportedKyselyFeatureError);
  });

  it('leaves no open transaction and no client held when the request hangs up mid-transaction', async () => {
    probe.reset();
    const lock = new pg.Client(database.options);
    await lock.connect();
    try {
      await lock.query('SELECT pg_advisory_lock($1)', [LOCK]);
      const request = await requestToHangUp(app, '/hang');
      const pid = await probe.held.promise;
      await waitFor(async () => ((await backendStates(database.name)).some((b) => b.pid === pid && b.query.includes('pg_advisory_xact_lock')) ? true : undefined), 'the lock wait');
      request.hangUp();
      expect(await probe.outcome.promise).toBeInstanceOf(RequestAbandonedError);
    } finally {
      await lock.end();
    }
    await waitFor(async () => (pool.totalCount === pool.idleCount ? true : undefined), 'every client back');
    expect(await labels()).toEqual([]);
  });

  it("runs the docs' example: a transfer commits with its audit row, one that overdraws rolls both back, each a savepoint of transferEach()", async () => {
    const accounts = app.get(AccountsService);
    const transfers = app.get(TransfersService);
    const [a, b] = [await accounts.open('a', 10), await accounts.open('b', 0)];
    await transfers.transfer(a, b, 4);
    await expect(transfers.transfer(a, b, 7)).rejects.toThrow('insufficient funds');
    expect([await accounts.balance(a), await accounts.balance(b)]).toEqual([6, 4]);
    expect(await transfers.transferEach([{ from: a, to: b, amount: 5 }, { from: a, to: b, amount: 5 }, { from: b, to: a, amount: 1 }])).toBe(1);
    expect([await accounts.balance(a), await accounts.balance(b)]).toEqual([2, 8]);
    const { rows } = await pool.query<{ event: string }>('SELECT event FROM audit ORDER BY id');
    expect(rows.map((row) => row.event)).toEqual([`transfer ${a} -> ${b}`, `transfer ${a} -> ${b}`, `transfer ${b} -> ${a}`]);
  });
});
