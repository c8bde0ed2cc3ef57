import { Injectable } from '@nestjs/common';
import { InjectConnection, PoolConnection } from 'nestjs-pg-pool';

@Injectable()
export class LedgerService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async record(from: number, to: number, amount: number): Promise<void> {
    await this.connection.query('INSERT INTO ledger (from_id, to_id, amount) VALUES ($1, $2, $3)', [from, to, amount]);
  }
}

// #region transfer
@Injectable()
export class TransfersService {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly ledger: LedgerService,
  ) {}

  transfer(from: number, to: number, amount: number): Promise<void> {
    return this.connection.transaction(async () => {
      await this.connection.query('UPDATE accounts SET balance = balance - $1 WHERE id = $2', [amount, from]);
      await this.connection.query('UPDATE accounts SET balance = balance + $1 WHERE id = $2', [amount, to]);
      await this.ledger.record(from, to, amount); // its queries join the transaction
    }, { isolationLevel: 'repeatable read' });
  }
}
// #endregion transfer

export interface Order {
  id: number;
  coupon: string;
}

export interface OrderSteps {
  create(order: Order): Promise<void>;
  redeem(coupon: string): Promise<void>;
  reserve(order: Order): Promise<void>;
}

export async function placeOrder(connection: PoolConnection, order: Order, steps: OrderSteps): Promise<void> {
  // #region savepoint
  await connection.transaction(async () => {
    await steps.create(order);
    await connection.transaction(() => steps.redeem(order.coupon)).catch(() => undefined); // undone alone
    await steps.reserve(order); // committed with the order
  });
  // #endregion savepoint
}
