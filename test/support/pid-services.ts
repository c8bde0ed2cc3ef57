import { Injectable } from '@nestjs/common';
import { InjectConnection, PoolConnection } from '../../lib/index.js';

const PID = 'SELECT pg_backend_pid() AS pid';

/** Two services that each ask which backend their query ran on: one request, one backend, whichever asks. */
@Injectable()
export class FirstService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}
  async pid(): Promise<number> {
    return (await this.connection.query<{ pid: number }>(PID)).rows[0].pid;
  }
}

@Injectable()
export class SecondService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}
  async pid(): Promise<number> {
    return (await this.connection.query<{ pid: number }>(`${PID} -- second`)).rows[0].pid;
  }
}
