import { Injectable, Module } from '@nestjs/common';
import { InjectConnection, PoolConnection, PoolModule } from 'nestjs-pg-pool';

@Injectable()
export class AccountsService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async balance(id: number): Promise<number> {
    const { rows } = await this.connection.query<{ balance: number }>('SELECT balance FROM accounts WHERE id = $1', [id]);
    return rows[0].balance;
  }

  transfer(from: number, to: number, amount: number): Promise<void> {
    // Any @InjectConnection() query made inside, in this service or another, joins the transaction.
    return this.connection.transaction(async () => {
      await this.connection.query('UPDATE accounts SET balance = balance - $1 WHERE id = $2', [amount, from]);
      await this.connection.query('UPDATE accounts SET balance = balance + $1 WHERE id = $2', [amount, to]);
    });
  }
}

@Module({
  imports: [PoolModule.forRoot({ connectionString: process.env.DATABASE_URL })],
  providers: [AccountsService],
})
export class AppModule {}
