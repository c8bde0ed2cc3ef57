import {
  BadRequestException,
  ConflictException,
  Controller,
  Get,
  Injectable,
  Param,
  Post,
  Scope,
  type INestApplication,
} from '@nestjs/common';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { getPoolToken, InjectConnection, PoolConnection, PoolModule, Transactional } from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ADAPTERS, createHttpApp } from './support/http-app.js';
import { expectNoOpenTransaction, Gate } from './support/transactions.js';

/** The backend a query ran on, and the labels it could see in a table. */
interface Sight {
  pid: number;
  labels: string[];
}

function look(connection: PoolConnection, table: 'orders' | 'ledger'): Promise<Sight> {
  return connection
    .query<Sight>(`SELECT pg_backend_pid() AS pid, coalesce(array_agg(label ORDER BY label), '{}') AS labels FROM ${table}`)
    .then((result) => result.rows[0]);
}

@Injectable()
class OrdersService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async add(label: string): Promise<number> {
    const { rows } = await this.connection.query<{ pid: number }>(
      'INSERT INTO orders (label) VALUES ($1) RETURNING pg_backend_pid() AS pid',
      [label],
    );
    return rows[0].pid;
  }

  bookings(): Promise<Sight> {
    return look(this.connection, 'ledger');
  }
}

@Injectable()
class LedgerService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async book(label: string): Promise<void> {
    await this.connection.query('INSERT INTO ledger (label) VALUES ($1)', [label]);
  }

  orders(): Promise<Sight> {
    return look(this.connection, 'orders');
  }

  @Transactional({ propagation: 'requiresNew' })
  async audit(label: string): Promise<number> {
    const { rows } = await this.connection.query<{ pid: number }>(
      'INSERT INTO audit (label) VALUES ($1) RETURNING pg_backend_pid() AS pid',
      [label],
    );
    return rows[0].pid;
  }

  @Transactional({ propagation: 'nested' })
  async tryAdd(label: string, fail: boolean): Promise<void> {
    await this.connection.query('INSERT INTO orders (label) VALUES ($1)', [label]);
    if (fail) throw new BadRequestException(`${label} rejected`);
  }
}

/** Request-scoped, so Nest creates it per request, after bootstrap. */
@Injectable({ scope: Scope.REQUEST })
class IsolationReport {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Transactional({ isolationLevel: 'repeatable read' })
  async isolation(): Promise<string> {
    return (await this.connection.query<{ level: string }>("SELECT current_setting('transaction_isolation') AS level")).rows[0].level;
  }
}

@Controller()
class OrdersController {
  constructor(
    private readonly orders: OrdersService,
    private readonly ledger: LedgerService,
    private readonly gate: Gate,
  ) {}

  @Post('orders/:label')
  @Transactional()
  async place(@Param('label') label: string): Promise<{ pids: number[]; ordersSeenByLedger: string[]; bookingsSeenByOrders: string[] }> {
    const insertedOn = await this.orders.add(label);
    const ordersSeen = await this.ledger.orders();
    await this.ledger.book(label);
    const bookingsSeen = await this.orders.bookings();
    await this.gate.pass();
    return {
      pids: [insertedOn, ordersSeen.pid, bookingsSeen.pid],
      ordersSeenByLedger: ordersSeen.labels,
      bookingsSeenByOrders: bookingsSeen.labels,
    };
  }

  // Above the route decorator on purpose: the route must survive the method being wrapped.
  @Transactional()
  @Post('rejected/:label')
  async rejected(@Param('label') label: string): Promise<never> {
    await this.orders.add(label);
    throw new ConflictException(`${label} rejected`);
  }

  @Post('audited/:label')
  @Transactional()
  async audited(@Param('label') label: string): Promise<never> {
    const orderPid = await this.orders.add(label);
    const auditPid = await this.ledger.audit(label);
    throw new BadRequestException({ orderPid, auditPid });
  }

  @Post('partial')
  @Transactional()
  async partial(): Promise<void> {
    await this.orders.add('first');
    await this.ledger.tryAdd('second', true).catch(() => undefined);
    await this.ledger.tryAdd('third', false);
  }

  @Get('seen')
  async seen(): Promise<string[][]> {
    return [(await this.ledger.orders()).labels, (await this.orders.bookings()).labels];
  }
}

@Controller()
class ReportController {
  constructor(private readonly report: IsolationReport) {}

  @Get('isolation')
  isolation(): Promise<string> {
    return this.report.isolation();
  }
}

describe.each(ADAPTERS)('@Transactional() in requests (%s)', (adapter) => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;
  const gate = new Gate();

  beforeAll(async () => {
    db = await createTestDatabase('tx_http');
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...db.options, max: 5 })],
        controllers: [OrdersController, ReportController],
        providers: [OrdersService, LedgerService, IsolationReport, { provide: Gate, useValue: gate }],
      },
      adapter,
    );
    pool = app.get<Pool>(getPoolToken());
    await pool.query('CREATE TABLE orders (label text NOT NULL); CREATE TABLE ledger (label text NOT NULL); CREATE TABLE audit (label text NOT NULL)');
  });

  beforeEach(() => pool.query('TRUNCATE orders, ledger, audit'));
  afterEach(() => expectNoOpenTransaction(pool, db.name));

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const rows = async (table: 'orders' | 'audit'): Promise<string[]> =>
    (await pool.query<{ label: string }>(`SELECT label FROM ${table} ORDER BY label`)).rows.map((row) => row.label);

  it('runs two services in one transaction on one backend, each seeing the rows of the other; a concurrent request sees none', async () => {
    const server = app.getHttpServer();
    const { reached, open } = gate.close();
    const placing = supertest(server).post('/orders/first').then((response) => response);
    await reached;
    await supertest(server).get('/seen').expect(200, [[], []]);
    open();
    const placed = await placing;
    expect(placed.status).toBe(201);
    expect(placed.body.ordersSeenByLedger).toEqual(['first']);
    expect(placed.body.bookingsSeenByOrders).toEqual(['first']);
    expect(new Set(placed.body.pids).size).toBe(1);
    await supertest(server).get('/seen').expect(200, [['first'], ['first']]);
  });

  it('rolls back when the handler throws and answers with its error', async () => {
    const { body } = await supertest(app.getHttpServer()).post('/rejected/nope').expect(409);
    expect(body.message).toBe('nope rejected');
    expect(await rows('orders')).toEqual([]);
  });

  it('commits a requiresNew transaction on its own client whatever becomes of the outer one', async () => {
    const { body } = await supertest(app.getHttpServer()).post('/audited/refund').expect(400);
    expect(body).toEqual({ orderPid: expect.any(Number), auditPid: expect.any(Number) });
    expect(body.auditPid).not.toBe(body.orderPid);
    expect(await rows('orders')).toEqual([]);
    expect(await rows('audit')).toEqual(['refund']);
  });

  it('undoes a failed nested method alone and commits the rest', async () => {
    await supertest(app.getHttpServer()).post('/partial').expect(201);
    expect(await rows('orders')).toEqual(['first', 'third']);
  });

  it('runs the methods of request-scoped providers in transactions too', async () => {
    await supertest(app.getHttpServer()).get('/isolation').expect(200, 'repeatable read');
  });
});
