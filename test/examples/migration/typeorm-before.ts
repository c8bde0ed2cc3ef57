import { Injectable, Module } from '@nestjs/common';
import { InjectDataSource, TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';

@Injectable()
export class AccountsService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  async balance(id: number): Promise<number> {
    const rows: Array<{ balance: number }> = await this.dataSource.query('SELECT balance FROM accounts WHERE id = $1', [id]);
    return rows[0].balance;
  }

  transfer(from: number, to: number, amount: number): Promise<void> {
    // Every query of the transaction must go through `manager`, passed down by hand.
    return this.dataSource.transaction(async (manager) => {
      await manager.query('UPDATE accounts SET balance = balance - $1 WHERE id = $2', [amount, from]);
      await manager.query('UPDATE accounts SET balance = balance + $1 WHERE id = $2', [amount, to]);
    });
  }
}

@Module({
  imports: [TypeOrmModule.forRoot({ type: 'postgres', url: process.env.DATABASE_URL })],
  providers: [AccountsService],
})
export class AppModule {}
