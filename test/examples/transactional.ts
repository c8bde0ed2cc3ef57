import { Body, Controller, Injectable, Post } from '@nestjs/common';
import { InjectConnection, PoolConnection, Transactional } from 'nestjs-pg-pool';

export interface OrderDto {
  item: string;
}

export interface Order extends OrderDto {
  id: number;
}

@Injectable()
export class OrdersService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async create(order: OrderDto): Promise<Order> {
    const { rows } = await this.connection.query<Order>('INSERT INTO orders (item) VALUES ($1) RETURNING id, item', [order.item]);
    return rows[0];
  }

  // #region retry
  @Transactional({ isolationLevel: 'serializable', retry: { maxRetries: 3 } })
  async issueTicket(): Promise<number> {
    const { rows } = await this.connection.query<{ next: number }>('SELECT coalesce(max(ticket), 0) + 1 AS next FROM tickets');
    await this.connection.query('INSERT INTO tickets (ticket) VALUES ($1)', [rows[0].next]);
    return rows[0].next;
  }
  // #endregion retry
}

// #region decorator
@Injectable()
export class AuditService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  // Kept even if the caller's transaction rolls back.
  @Transactional({ propagation: 'requiresNew' })
  async log(event: string, id: number): Promise<void> {
    await this.connection.query('INSERT INTO audit (event, order_id) VALUES ($1, $2)', [event, id]);
  }
}

@Controller('orders')
export class OrdersController {
  constructor(private readonly orders: OrdersService, private readonly audit: AuditService) {}

  @Post()
  @Transactional()
  async place(@Body() order: OrderDto): Promise<Order> {
    const placed = await this.orders.create(order); // same client, same transaction
    await this.audit.log('order placed', placed.id);
    return placed;
  }
}
// #endregion decorator
