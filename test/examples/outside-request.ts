import { Injectable } from '@nestjs/common';
import { ConnectionScope, InjectConnection, PoolConnection } from 'nestjs-pg-pool';

@Injectable()
export class NightlyCleanup {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  /** Called by a scheduler or a queue consumer: no request, so no scope of its own. */
  async run(): Promise<number> {
    // One client for every query inside, released when the function settles.
    return ConnectionScope.run(async () => {
      await this.connection.query("SET LOCAL statement_timeout = '30s'");
      const { rowCount } = await this.connection.query('DELETE FROM sessions WHERE expires_at < now()');
      return rowCount ?? 0;
    });
  }
}
