import { Injectable, Module } from '@nestjs/common';
import type { Generated, Kysely } from 'kysely';
import { InjectConnection, PoolConnection, PoolModule, Transactional } from 'nestjs-pg-pool';
import { InjectKysely, KyselyModule } from 'nestjs-pg-pool/kysely';
import Cursor from 'pg-cursor';

// #region database
export interface Database {
  accounts: { id: Generated<number>; owner: string; balance: number };
  audit: { id: Generated<number>; event: string };
}
// #endregion database

// #region service
@Injectable()
export class AccountsService {
  constructor(@InjectKysely() private readonly db: Kysely<Database>) {}

  // Runs on the request's client, like an @InjectConnection() query.
  async open(owner: string, balance: number): Promise<number> {
    const { id } = await this.db.insertInto('accounts').values({ owner, balance }).returning('id').executeTakeFirstOrThrow();
    return id;
  }

  async balance(id: number): Promise<number | undefined> {
    const row = await this.db.selectFrom('accounts').select('balance').where('id', '=', id).executeTakeFirst();
    return row?.balance;
  }
}
// #endregion service

// #region joins
@Injectable()
export class AuditService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  // Called inside a Kysely transaction, it joins it.
  @Transactional()
  async record(event: string): Promise<void> {
    await this.connection.query('INSERT INTO audit (event) VALUES ($1)', [event]);
  }
}
// #endregion joins

// #region transaction
@Injectable()
export class TransfersService {
  constructor(
    @InjectKysely() private readonly db: Kysely<Database>,
    private readonly audit: AuditService,
  ) {}

  transfer(from: number, to: number, amount: number): Promise<void> {
    return this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => {
        await trx.updateTable('accounts').set((eb) => ({ balance: eb('balance', '-', amount) })).where('id', '=', from).execute();
        await trx.updateTable('accounts').set((eb) => ({ balance: eb('balance', '+', amount) })).where('id', '=', to).execute();
        await this.audit.record(`transfer ${from} -> ${to}`); // same transaction
        const { balance } = await trx.selectFrom('accounts').select('balance').where('id', '=', from).executeTakeFirstOrThrow();
        if (balance < 0) throw new Error('insufficient funds'); // rolls all of it back
      });
  }

  // Each transfer is a savepoint of the method's transaction: one that fails undoes its part alone.
  // (A savepoint cannot raise the isolation level: the method's transaction begins at the transfers' level.)
  @Transactional({ isolationLevel: 'repeatable read' })
  async transferEach(transfers: Array<{ from: number; to: number; amount: number }>): Promise<number> {
    let failed = 0;
    for (const { from, to, amount } of transfers) {
      await this.transfer(from, to, amount).catch(() => failed++);
    }
    return failed;
  }
}
// #endregion transaction

// #region setup
@Module({
  imports: [
    PoolModule.forRoot({ connectionString: process.env.DATABASE_URL }),
    // The Kysely of the 'default' datasource; `cursor` is for `.stream()`.
    KyselyModule.forRoot({ cursor: Cursor }),
  ],
  providers: [AccountsService, AuditService, TransfersService],
})
export class AppModule {}
// #endregion setup
