import { BadRequestException, Body, Controller, HttpCode, Injectable, Post, type DynamicModule, type INestApplication, type Type } from '@nestjs/common';
import { eq, sql as drizzleSql } from 'drizzle-orm';
import { bigint, integer, pgTable, serial, varchar } from 'drizzle-orm/pg-core';
import { sql, type Generated, type Kysely } from 'kysely';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { afterCommit, getPoolToken, InjectConnection, PoolConnection, PoolModule, Transactional } from '../lib/index.js';
import { DrizzleModule, InjectDrizzle, type DrizzleDatabase, type DrizzleTransaction } from '../lib/drizzle/index.js';
import { InjectKysely, KyselyModule } from '../lib/kysely/index.js';
import { backendStates, createTestDatabase, waitForRunningQuery, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { request as httpRequest } from 'node:http';
import { createHttpApp, listeningPort } from './support/http-app.js';
import { clientsBack, expectNoOpenTransaction } from './support/transactions.js';

const ACCOUNTS = 4;
const OPENING_BALANCE = 100;
/** Returned by each statement: the backend it ran on. */
export const RETURNING_PID = 'RETURNING pg_backend_pid() AS pid';

/** One transfer, as the HTTP client asks for it. */
export interface Order {
  from: number;
  to: number;
  amount: number;
  /** Fail the first attempt with a serialization failure (40001): the transfer is retried. */
  conflictOnce?: boolean;
}

/** What a transfer saw: the backend of each of its statements, and how many attempts it took. */
export interface Receipt {
  pids: number[];
  attempts: number;
}

/** Fails the transaction with a serialization failure, as a concurrent one would. */
export const FORCED_CONFLICT = "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$";
/** Sleeps on the server long enough for the test to hang up. */
export const SLEEP = 'SELECT pg_sleep(30) /* hang-up */';

/** The bank written with one query tool: every implementation keeps the same rules. */
export abstract class Transfers {
  /** Hooks run after commits, counted by the test. */
  static committed = 0;
  /** Opened by the test once it has seen the hang-up request's statement run. */
  static hangUpStarted = new Deferred<number>();

  /**
   * Debits and credits in a transaction; the record of the transfer in a
   * nested one (a savepoint) whose failure (a note too long) is caught; more
   * than the balance is refused by throwing; retried after a serialization
   * failure; an after-commit hook counts the commit.
   */
  abstract transfer(order: Order): Promise<Receipt>;
  /** Runs a transaction that sleeps on the server: the test hangs up meanwhile. */
  abstract transferSlowly(order: Order): Promise<void>;

  protected countCommit(): void {
    afterCommit(() => {
      Transfers.committed++;
    });
  }

  /** Attempts of each call (an order object per call, the same across its retries). */
  private readonly attempts = new WeakMap<Order, number>();

  /** This attempt's number for `order`, from 1. */
  protected attempt(order: Order): number {
    const attempt = (this.attempts.get(order) ?? 0) + 1;
    this.attempts.set(order, attempt);
    return attempt;
  }

  /** The note recorded with a transfer: too long for its column for amounts divisible by 7. */
  protected noteFor(order: Order): string {
    return 'x'.repeat(order.amount % 7 === 0 ? 40 : 4);
  }
}

/** With `@InjectConnection()` and SQL strings. */
@Injectable()
export class RawTransfers extends Transfers {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {
    super();
  }

  @Transactional({ isolationLevel: 'serializable', retry: { maxRetries: 2, initialDelayMs: 1 } })
  async transfer(order: Order): Promise<Receipt> {
    const attempt = this.attempt(order);
    const pids: number[] = [];
    const debited = await this.connection.query<{ balance: number; pid: number }>(
      `UPDATE accounts SET balance = balance - $2 WHERE id = $1 RETURNING balance, pg_backend_pid() AS pid`,
      [order.from, order.amount],
    );
    pids.push(debited.rows[0].pid);
    if (debited.rows[0].balance < 0) throw new BadRequestException('insufficient funds');
    if (order.conflictOnce && attempt === 1) await this.connection.query(FORCED_CONFLICT);
    const credited = await this.connection.query<{ pid: number }>(`UPDATE accounts SET balance = balance + $2 WHERE id = $1 ${RETURNING_PID}`, [order.to, order.amount]);
    pids.push(credited.rows[0].pid);
    // The record is optional: a nested transaction whose failure leaves the transfer itself standing.
    await this.connection
      .transaction(async (savepoint) => {
        const recorded = await savepoint.query<{ pid: number }>(`INSERT INTO transfers (source, target, amount, note) VALUES ($1, $2, $3, $4) ${RETURNING_PID}`, [
          order.from,
          order.to,
          order.amount,
          this.noteFor(order),
        ]);
        pids.push(recorded.rows[0].pid);
      })
      .catch(() => undefined);
    this.countCommit();
    return { pids, attempts: attempt };
  }

  @Transactional()
  async transferSlowly(order: Order): Promise<void> {
    const { rows } = await this.connection.query<{ pid: number }>(`UPDATE accounts SET balance = balance - $2 WHERE id = $1 ${RETURNING_PID}`, [order.from, order.amount]);
    Transfers.hangUpStarted.resolve(rows[0].pid);
    await this.connection.query(SLEEP);
    await this.connection.query('UPDATE accounts SET balance = balance + $2 WHERE id = $1', [order.to, order.amount]);
    this.countCommit();
  }
}

/** The bank's tables, for the query builders. */
interface BankTables {
  accounts: { id: number; balance: number };
  transfers: { id: Generated<number>; source: number; target: number; amount: number; note: string };
}

/** With Kysely: its transactions are the module's, nested ones savepoints, joined by @Transactional(). */
@Injectable()
export class KyselyTransfers extends Transfers {
  constructor(@InjectKysely() private readonly db: Kysely<BankTables>) {
    super();
  }

  // Kysely's builder has no retry: the module's transaction around it retries, and Kysely's queries join it.
  @Transactional({ isolationLevel: 'serializable', retry: { maxRetries: 2, initialDelayMs: 1 } })
  async transfer(order: Order): Promise<Receipt> {
    const attempt = this.attempt(order);
    const pids: number[] = [];
    const debited = await this.db
      .updateTable('accounts')
      .set((eb) => ({ balance: eb('balance', '-', order.amount) }))
      .where('id', '=', order.from)
      .returning(['balance', sql<number>`pg_backend_pid()`.as('pid')])
      .executeTakeFirstOrThrow();
    pids.push(debited.pid);
    if (debited.balance < 0) throw new BadRequestException('insufficient funds');
    if (order.conflictOnce && attempt === 1) await sql.raw(FORCED_CONFLICT).execute(this.db);
    const credited = await this.db
      .updateTable('accounts')
      .set((eb) => ({ balance: eb('balance', '+', order.amount) }))
      .where('id', '=', order.to)
      .returning(sql<number>`pg_backend_pid()`.as('pid'))
      .executeTakeFirstOrThrow();
    pids.push(credited.pid);
    await this.db
      .transaction()
      .execute(async (trx) => {
        const recorded = await trx
          .insertInto('transfers')
          .values({ source: order.from, target: order.to, amount: order.amount, note: this.noteFor(order) })
          .returning(sql<number>`pg_backend_pid()`.as('pid'))
          .executeTakeFirstOrThrow();
        pids.push(recorded.pid);
      })
      .catch(() => undefined);
    this.countCommit();
    return { pids, attempts: attempt };
  }

  async transferSlowly(order: Order): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const { pid } = await trx
        .updateTable('accounts')
        .set((eb) => ({ balance: eb('balance', '-', order.amount) }))
        .where('id', '=', order.from)
        .returning(sql<number>`pg_backend_pid()`.as('pid'))
        .executeTakeFirstOrThrow();
      Transfers.hangUpStarted.resolve(pid);
      await sql.raw(SLEEP).execute(trx);
      await trx.updateTable('accounts').set((eb) => ({ balance: eb('balance', '+', order.amount) })).where('id', '=', order.to).execute();
      this.countCommit();
    });
  }
}

const accounts = pgTable('accounts', { id: integer('id').primaryKey(), balance: bigint('balance', { mode: 'number' }).notNull() });
const transfers = pgTable('transfers', {
  id: serial('id').primaryKey(),
  source: integer('source').notNull(),
  target: integer('target').notNull(),
  amount: integer('amount').notNull(),
  note: varchar('note', { length: 20 }).notNull(),
});
const bank = { accounts, transfers };
const PID = drizzleSql<number>`pg_backend_pid()`;

/** With Drizzle: db.transaction() is the module's (its config carries the retry), tx.transaction() a savepoint. */
@Injectable()
export class DrizzleTransfers extends Transfers {
  constructor(@InjectDrizzle() private readonly db: DrizzleDatabase<typeof bank>) {
    super();
  }

  transfer(order: Order): Promise<Receipt> {
    return this.db.transaction(
      async (tx) => {
        const attempt = this.attempt(order);
        const pids: number[] = [];
        const [debited] = await this.move(tx, order.from, -order.amount);
        pids.push(debited.pid);
        if (debited.balance < 0) throw new BadRequestException('insufficient funds');
        if (order.conflictOnce && attempt === 1) await tx.execute(drizzleSql.raw(FORCED_CONFLICT));
        pids.push((await this.move(tx, order.to, order.amount))[0].pid);
        await tx
          .transaction(async (savepoint) => {
            const values = { source: order.from, target: order.to, amount: order.amount, note: this.noteFor(order) };
            pids.push((await savepoint.insert(transfers).values(values).returning({ pid: PID }))[0].pid);
          })
          .catch(() => undefined);
        this.countCommit();
        return { pids, attempts: attempt };
      },
      { isolationLevel: 'serializable', retry: { maxRetries: 2, initialDelayMs: 1 } },
    );
  }

  transferSlowly(order: Order): Promise<void> {
    return this.db.transaction(async (tx) => {
      Transfers.hangUpStarted.resolve((await this.move(tx, order.from, -order.amount))[0].pid);
      await tx.execute(drizzleSql.raw(SLEEP));
      await this.move(tx, order.to, order.amount);
      this.countCommit();
    });
  }

  private move(tx: DrizzleTransaction<typeof bank>, account: number, amount: number): Promise<Array<{ balance: number; pid: number }>> {
    return tx
      .update(accounts)
      .set({ balance: drizzleSql`${accounts.balance} + ${amount}` })
      .where(eq(accounts.id, account))
      .returning({ balance: accounts.balance, pid: PID });
  }
}

/** The bank's HTTP face, the same for every implementation. */
function controller(): Type<unknown> {
  @Controller()
  class BankController {
    constructor(private readonly transfers: Transfers) {}

    @Post('transfers')
    @HttpCode(200)
    transfer(@Body() order: Order): Promise<Receipt> {
      return this.transfers.transfer(order);
    }

    @Post('slow-transfers')
    @HttpCode(200)
    async slow(@Body() order: Order): Promise<string> {
      await this.transfers.transferSlowly(order);
      return 'done';
    }
  }
  return BankController;
}

/** The implementations under test: the same bank written three ways. */
export const IMPLEMENTATIONS: Array<[string, Type<Transfers>, () => DynamicModule[]]> = [
  ['raw SQL', RawTransfers, () => []],
  ['Kysely', KyselyTransfers, () => [KyselyModule.forRoot()]],
  ['Drizzle', DrizzleTransfers, () => [DrizzleModule.forRoot({ schema: bank })]],
];

describe.each(IMPLEMENTATIONS)('the bank written with %s', (_label, service, imports) => {
  let db: TestDatabase;
  let app: INestApplication;

  const balances = async (): Promise<number[]> => (await db.query<{ balance: string }>('SELECT balance FROM accounts ORDER BY id')).rows.map((row) => Number(row.balance));
  const http = () => supertest(app.getHttpServer());

  beforeAll(async () => {
    db = await createTestDatabase('bank3');
    await db.query(
      `CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
       INSERT INTO accounts SELECT g, ${OPENING_BALANCE} FROM generate_series(1, ${ACCOUNTS}) g;
       CREATE TABLE transfers (id serial PRIMARY KEY, source int NOT NULL, target int NOT NULL, amount int NOT NULL, note varchar(20) NOT NULL)`,
    );
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...db.options, max: 4 }), ...imports()],
        controllers: [controller()],
        providers: [{ provide: Transfers, useClass: service }],
      },
      'express',
    );
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  beforeEach(() => {
    Transfers.committed = 0;
  });

  it('commits a transfer on one backend, its record in a savepoint, and runs its hook once', async () => {
    const receipt = (await http().post('/transfers').send({ from: 1, to: 2, amount: 10 }).expect(200)).body as Receipt;
    expect(new Set(receipt.pids).size).toBe(1);
    expect(receipt.pids).toHaveLength(3);
    expect(await balances()).toEqual([90, 110, 100, 100]);
    expect(Transfers.committed).toBe(1);
  });

  it('keeps the transfer when its record fails in the savepoint', async () => {
    // 14 % 7 === 0: a note too long for its column, in the nested transaction alone.
    const receipt = (await http().post('/transfers').send({ from: 3, to: 4, amount: 14 }).expect(200)).body as Receipt;
    expect(receipt.pids).toHaveLength(2);
    expect((await db.query('SELECT 1 FROM transfers WHERE amount = 14')).rowCount).toBe(0);
    expect(Transfers.committed).toBe(1);
  });

  it('rolls back by throwing, and runs no hook', async () => {
    const before = await balances();
    await http().post('/transfers').send({ from: 1, to: 2, amount: 1000 }).expect(400);
    expect(await balances()).toEqual(before);
    expect(Transfers.committed).toBe(0);
  });

  it('retries a serialization failure, on one backend, and runs the hook once', async () => {
    const before = await balances();
    const receipt = (await http().post('/transfers').send({ from: 2, to: 1, amount: 5, conflictOnce: true }).expect(200)).body as Receipt;
    expect(receipt.attempts).toBe(2);
    expect(new Set(receipt.pids).size).toBe(1);
    expect(await balances()).toEqual([before[0] + 5, before[1] - 5, before[2], before[3]]);
    expect(Transfers.committed).toBe(1);
  });

  it('leaves nothing of a transaction whose client hung up, and runs no hook', async () => {
    const before = await balances();
    Transfers.hangUpStarted = new Deferred<number>();
    const { hangUp } = await postToHangUp(app, '/slow-transfers', { from: 1, to: 3, amount: 7 });
    const pid = await Transfers.hangUpStarted.promise;
    await waitForRunningQuery(db.name, pid, 'hang-up');
    hangUp();
    await clientsBack(app.get<Pool>(getPoolToken()));
    expect((await backendStates(db.name)).find((backend) => backend.pid === pid)?.state).not.toBe('active');
    await expectNoOpenTransaction(app.get<Pool>(getPoolToken()), db.name);
    expect(await balances()).toEqual(before);
    expect(Transfers.committed).toBe(0);
  });

  it('keeps the sum of the balances through concurrent transfers, each on one backend, one hook per commit', async () => {
    const orders = Array.from({ length: 40 }, (_, n) => ({ from: (n % ACCOUNTS) + 1, to: ((n + 1) % ACCOUNTS) + 1, amount: 1 + (n % 5) }));
    const answers = await Promise.all(orders.map((order) => http().post('/transfers').send(order)));
    const receipts = answers.filter((answer) => answer.status === 200).map((answer) => answer.body as Receipt);
    for (const receipt of receipts) expect(new Set(receipt.pids).size).toBe(1);
    expect(answers.every((answer) => answer.status === 200 || answer.status === 400 || answer.status === 500)).toBe(true);
    expect((await balances()).reduce((sum, balance) => sum + balance, 0)).toBe(ACCOUNTS * OPENING_BALANCE);
    expect(Transfers.committed).toBe(receipts.length);
  });
});


/** POSTs `body` as JSON on a connection of its own; `hangUp()` closes it before the answer. */
async function postToHangUp(app: INestApplication, path: string, body: object): Promise<{ hangUp: () => void }> {
  const payload = JSON.stringify(body);
  const sent = httpRequest({ host: '127.0.0.1', port: await listeningPort(app), path, method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } });
  sent.on('error', () => undefined);
  sent.end(payload);
  return { hangUp: () => sent.destroy() };
}
