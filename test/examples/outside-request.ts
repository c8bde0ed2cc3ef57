import { Injectable } from '@nestjs/common';
import { ConnectionScope, InjectConnection, PoolConnection } from 'nestjs-pg-pool';

@Injectable()
export class NightlyCleanup {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  /** Called by a scheduler or a queue consumer: no request, so no scope of its own. */
  async run(): Promise<number> {
    // One client for every query inside, released when the function settles.
    return ConnectionScope.run(async () => {
      // A session-level lock is taken and released on one connection: another instance skips the run.
      const { rows } = await this.connection.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(42) AS locked');
      if (!rows[0].locked) return 0;
      try {
        const { rowCount } = await this.connection.query('DELETE FROM sessions WHERE expires_at < now()');
        return rowCount ?? 0;
      } finally {
        await this.connection.query('SELECT pg_advisory_unlock(42)');
      }
    });
  }
}
