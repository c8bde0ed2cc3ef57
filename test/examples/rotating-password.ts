import { Injectable, Module } from '@nestjs/common';
import { PoolModule } from 'nestjs-pg-pool';

/**
 * Stands for your secret store's client: an IAM authentication token signer
 * (RDS, Aurora, Cloud SQL, Azure) or a Vault lease of a static role.
 */
@Injectable()
export class DatabaseCredentials {
  private current: { password: string; expiresAt: number } | undefined;

  /** A password valid now: the one fetched last, until a minute before it expires. */
  async password(): Promise<string> {
    if (!this.current || Date.now() > this.current.expiresAt - 60_000) this.current = await this.fetch();
    return this.current.password;
  }

  private async fetch(): Promise<{ password: string; expiresAt: number }> {
    // For RDS: new Signer({ hostname, port, username, region }).getAuthToken(), valid 15 minutes.
    return { password: process.env.DATABASE_PASSWORD ?? '', expiresAt: Date.now() + 15 * 60_000 };
  }
}

@Module({ providers: [DatabaseCredentials], exports: [DatabaseCredentials] })
export class CredentialsModule {}

@Module({
  imports: [
    PoolModule.forRootAsync({
      imports: [CredentialsModule],
      inject: [DatabaseCredentials],
      useFactory: (credentials: DatabaseCredentials) => ({
        host: process.env.DATABASE_HOST,
        user: 'app',
        database: 'app',
        ssl: true,
        // Called by node-postgres for every new connection; open connections keep theirs.
        password: () => credentials.password(),
      }),
    }),
  ],
})
export class AppModule {}
