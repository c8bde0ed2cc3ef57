import { Injectable, Module } from '@nestjs/common';
import { InjectConnection, PoolConnection, PoolModule } from 'nestjs-pg-pool';

@Injectable()
export class UsersRepository {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async findName(id: number): Promise<string | undefined> {
    const { rows } = await this.connection.query<{ name: string }>('SELECT name FROM users WHERE id = $1', [id]);
    return rows[0]?.name;
  }
}

@Module({
  imports: [PoolModule.forRoot({ connectionString: process.env.DATABASE_URL, max: 10 })],
  providers: [UsersRepository],
})
export class AppModule {}
