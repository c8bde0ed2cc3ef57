import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Pool } from 'pg';
import { getConnectionToken, getPoolToken, InjectConnection, PoolConnection, PoolModule, Transactional } from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { expectNoOpenTransaction } from './support/transactions.js';

/** Holds the first `parties` arrivals until all of them are there; later ones pass at once. */
class Barrier {
  private waiting: Array<() => void> = [];
  constructor(private parties: number) {}

  async arrive(): Promise<void> {
    if (this.parties === 0) return;
    const released = new Promise<void>((resolve) => this.waiting.push(resolve));
    if (--this.parties === 0) for (const release of this.waiting.splice(0)) release();
    await released;
  }
}

const RETRY = { maxRetries: 3, initialDelayMs: 5, maxDelayMs: 20 };

@Injectable()
class TicketService {
  attempts = 0;
  barrier = new Barrier(0);

  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Transactional({ isolationLevel: 'serializable', retry: RETRY })
  issue(): Promise<number> {
    return this.issueOnce();
  }

  @Transactional({ isolationLevel: 'serializable' })
  issueWithoutRetry(): Promise<number> {
    return this.issueOnce();
  }

  // Numbers tickets by counting them: two of these interleaved under serializable cannot both commit.
  private async issueOnce(): Promise<number> {
    this.attempts++;
    const { rows } = await this.connection.query<{ issued: number }>('SELECT count(*)::int AS issued FROM tickets');
    await this.barrier.arrive();
    const number = rows[0].issued + 1;
    await this.connection.query('INSERT INTO tickets (number) VALUES ($1)', [number]);
    return number;
  }
}

describe('transaction retries', () => {
  let db: TestDatabase;
  let app: INestApplicationContext;
  let pool: Pool;
  let tickets: TicketService;
  let connection: PoolConnection;

  beforeAll(async () => {
    db = await createTestDatabase('tx_retry');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 4 })],
      providers: [TicketService],
    }).compile();
    app = await moduleRef.init();
    pool = app.get(getPoolToken());
    tickets = app.get(TicketService);
    connection = app.get(getConnectionToken());
    await pool.query('CREATE TABLE tickets (number int NOT NULL)');
  });

  beforeEach(async () => {
    await pool.query('TRUNCATE tickets');
    tickets.attempts = 0;
  });
  afterEach(() => expectNoOpenTransaction(pool, db.name));

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const issued = async (): Promise<number[]> =>
    (await pool.query<{ number: number }>('SELECT number FROM tickets ORDER BY number')).rows.map((row) => row.number);

  it('lets one of two conflicting serializable transactions fail when retries are off (the default)', async () => {
    tickets.barrier = new Barrier(2);
    const outcomes = await Promise.allSettled([tickets.issueWithoutRetry(), tickets.issueWithoutRetry()]);
    const failures = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(failures).toHaveLength(1);
    expect((failures[0] as PromiseRejectedResult).reason).toMatchObject({ code: '40001' });
    expect(await issued()).toEqual([1]);
    expect(tickets.attempts).toBe(2);
  });

  it('commits both conflicting serializable transactions when retries are on', async () => {
    tickets.barrier = new Barrier(2);
    const numbers = await Promise.all([tickets.issue(), tickets.issue()]);
    expect(numbers.sort()).toEqual([1, 2]);
    expect(await issued()).toEqual([1, 2]);
    expect(tickets.attempts).toBeGreaterThanOrEqual(3);
  });

  const raise = (condition: 'serialization_failure' | 'deadlock_detected' | 'division_by_zero'): Promise<unknown> =>
    connection.query(`DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '${condition}'; END $$`);

  it('stops after maxRetries more attempts and rethrows the last failure', async () => {
    let attempts = 0;
    const work = connection.transaction(
      async () => {
        attempts++;
        await raise('serialization_failure');
      },
      { retry: { maxRetries: 2, initialDelayMs: 1, maxDelayMs: 2 } },
    );
    await expect(work).rejects.toMatchObject({ code: '40001' });
    expect(attempts).toBe(3);
  });

  it('retries a deadlock, and nothing else', async () => {
    let attempts = 0;
    const result = await connection.transaction(
      async () => {
        if (++attempts === 1) await raise('deadlock_detected');
        return 'done';
      },
      { retry: { maxRetries: 2, initialDelayMs: 1 } },
    );
    expect([result, attempts]).toEqual(['done', 2]);

    attempts = 0;
    const other = connection.transaction(
      async () => {
        attempts++;
        await raise('division_by_zero');
      },
      { retry: { maxRetries: 2, initialDelayMs: 1 } },
    );
    await expect(other).rejects.toMatchObject({ code: '22012' });
    expect(attempts).toBe(1);
  });
});
