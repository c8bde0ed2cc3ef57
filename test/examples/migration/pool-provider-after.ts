import { Injectable, Module } from '@nestjs/common';
import type { Pool } from 'pg';
import { InjectConnection, InjectPool, PoolConnection, PoolModule, Transactional } from 'nestjs-pg-pool';

@Injectable()
export class AccountsService {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    @InjectPool() readonly pool: Pool, // the same pg.Pool as before, for code not moved yet
  ) {}

  @Transactional()
  async transfer(from: number, to: number, amount: number): Promise<void> {
    await this.connection.query('UPDATE accounts SET balance = balance - $1 WHERE id = $2', [amount, from]);
    await this.connection.query('UPDATE accounts SET balance = balance + $1 WHERE id = $2', [amount, to]);
  }
}

@Module({
  imports: [PoolModule.forRoot({ connectionString: process.env.DATABASE_URL, max: 10 })],
  providers: [AccountsService],
})
export class AppModule {}
