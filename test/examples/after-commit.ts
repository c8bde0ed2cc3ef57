import { Injectable } from '@nestjs/common';
import { afterCommit, InjectConnection, PoolConnection, Transactional } from 'nestjs-pg-pool';

/** The application's message broker client (RabbitMQ, Kafka, NATS, …). */
export abstract class EventBus {
  abstract publish(topic: string, payload: object): Promise<void>;
}

@Injectable()
export class OrdersService {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly events: EventBus,
  ) {}

  @Transactional()
  async place(customerId: number, total: number): Promise<number> {
    const { rows } = await this.connection.query<{ id: number }>(
      'INSERT INTO orders (customer_id, total) VALUES ($1, $2) RETURNING id',
      [customerId, total],
    );
    const id = rows[0].id;
    // Published only if the order is committed: never for an order that was rolled back.
    afterCommit(() => this.events.publish('order.placed', { id, customerId, total }));
    return id;
  }
}
