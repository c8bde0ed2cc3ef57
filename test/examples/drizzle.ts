import { Injectable, Module } from '@nestjs/common';
import { eq, sql } from 'drizzle-orm';
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core';
import { InjectConnection, PoolConnection, PoolModule, Transactional } from 'nestjs-pg-pool';
import { DrizzleModule, InjectDrizzle, type DrizzleDatabase } from 'nestjs-pg-pool/drizzle';

// #region schema
export const accounts = pgTable('accounts', {
  id: serial('id').primaryKey(),
  owner: text('owner').notNull(),
  balance: integer('balance').notNull(),
});
export const ledger = pgTable('ledger', {
  id: serial('id').primaryKey(),
  fromId: integer('from_id').notNull(),
  toId: integer('to_id').notNull(),
  amount: integer('amount').notNull(),
});
export const schema = { accounts, ledger };

/** The injected database, typed by the schema. */
export type Database = DrizzleDatabase<typeof schema>;
// #endregion schema

// #region services
/** A service written with @InjectConnection(), as the application's older ones are. */
@Injectable()
export class LedgerService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Transactional() // joins the caller's transaction, or begins one
  async record(from: number, to: number, amount: number): Promise<void> {
    await this.connection.query('INSERT INTO ledger (from_id, to_id, amount) VALUES ($1, $2, $3)', [from, to, amount]);
  }
}

@Injectable()
export class AccountsService {
  constructor(
    @InjectDrizzle() private readonly db: Database,
    private readonly ledger: LedgerService,
  ) {}

  async balanceOf(owner: string): Promise<number | undefined> {
    const [account] = await this.db.select({ balance: accounts.balance }).from(accounts).where(eq(accounts.owner, owner));
    return account?.balance;
  }

  transfer(from: number, to: number, amount: number): Promise<void> {
    return this.db.transaction(async (tx) => {
      await tx.update(accounts).set({ balance: sql`${accounts.balance} - ${amount}` }).where(eq(accounts.id, from));
      await tx.update(accounts).set({ balance: sql`${accounts.balance} + ${amount}` }).where(eq(accounts.id, to));
      await this.ledger.record(from, to, amount); // its query joins this transaction
    }, { isolationLevel: 'repeatable read' });
  }
}
// #endregion services

// #region savepoints
export interface Payout {
  to: number;
  amount: number;
}

@Injectable()
export class PayoutsService {
  constructor(private readonly accounts: AccountsService) {}

  /** Pays what the account can cover: one transaction, a savepoint per payout. */
  @Transactional({ isolationLevel: 'repeatable read' }) // at least what transfer() asks for
  async payAll(from: number, payouts: Payout[]): Promise<number> {
    let paid = 0;
    for (const { to, amount } of payouts) {
      // transfer()'s db.transaction() is a savepoint here: a payout that fails is undone alone.
      await this.accounts.transfer(from, to, amount).then(
        () => paid++,
        () => undefined,
      );
    }
    return paid;
  }
}
// #endregion savepoints

// #region module
@Module({
  imports: [PoolModule.forRoot({ connectionString: process.env.DATABASE_URL }), DrizzleModule.forRoot({ schema })],
  providers: [LedgerService, AccountsService, PayoutsService],
})
export class AppModule {}
// #endregion module
