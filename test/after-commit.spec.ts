import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Pool } from 'pg';
import { afterCommit, ConnectionScope, getConnectionToken, getPoolToken, InjectConnection, PoolConnection, PoolModule, Transactional } from '../lib/index.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { expectNoOpenTransaction } from './support/transactions.js';

/** What a hook saw when it ran: the committed rows (read by another connection), and its own statement's transaction and backend. */
interface HookRun {
  label: string;
  committedRows: number;
  txid: string | null;
  pid: number;
}

/** The suite's database, for reads on a connection of their own. */
class Database {
  current!: TestDatabase;
}

@Injectable()
class Events {
  readonly runs: HookRun[] = [];
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly db: Database,
  ) {}

  /** Registers a hook that records what it sees once it runs. */
  publishAfterCommit(label: string): void {
    afterCommit(async () => {
      const committedRows = (await this.db.current.query<{ n: number }>('SELECT count(*)::int AS n FROM events WHERE label = $1', [label])).rows[0].n;
      const { rows } = await this.connection.query<{ txid: string | null; pid: number }>(
        'SELECT txid_current_if_assigned()::text AS txid, pg_backend_pid() AS pid',
      );
      this.runs.push({ label, committedRows, ...rows[0] });
    });
  }
}

@Injectable()
class Writer {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly events: Events,
  ) {}

  async write(label: string): Promise<void> {
    await this.connection.query('INSERT INTO events (label) VALUES ($1)', [label]);
    this.events.publishAfterCommit(label);
  }

  @Transactional()
  async committed(label: string): Promise<string> {
    await this.write(label);
    return 'done';
  }

  @Transactional()
  async failing(label: string): Promise<void> {
    await this.write(label);
    throw new Error('rolled back');
  }

  @Transactional({ propagation: 'requiresNew' })
  async separately(label: string): Promise<void> {
    await this.write(label);
  }
}

describe('afterCommit()', () => {
  let db: TestDatabase;
  let app: INestApplicationContext;
  let connection: PoolConnection;
  let events: Events;
  let writer: Writer;
  const logger = new CapturingLogger();

  beforeAll(async () => {
    db = await createTestDatabase('after_commit');
    await db.query('CREATE TABLE events (label text NOT NULL)');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 3 })],
      providers: [Events, Writer, { provide: Database, useValue: Object.assign(new Database(), { current: db }) }],
    }).compile();
    app = moduleRef.createNestApplication({ logger });
    await app.init();
    connection = app.get(getConnectionToken());
    events = app.get(Events);
    writer = app.get(Writer);
  });

  afterEach(() => {
    events.runs.length = 0;
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('runs once the outermost transaction has committed, outside it, on the scope\'s client, before the caller gets the result', async () => {
    const { result, pid } = await ConnectionScope.run(async () => {
      const pid = (await connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      return { result: await writer.committed('first'), pid };
    });
    expect(result).toBe('done');
    expect(events.runs).toEqual([{ label: 'first', committedRows: 1, txid: null, pid }]);
  });

  it('never runs after a rollback, and a savepoint rolled back drops the hooks registered inside it', async () => {
    await expect(writer.failing('thrown')).rejects.toThrow('rolled back');
    await connection.transaction(async () => {
      await writer.write('kept');
      await connection
        .transaction(async () => {
          await writer.write('savepoint rolled back');
          throw new Error('undo the savepoint');
        })
        .catch(() => undefined);
      await connection.transaction(() => writer.write('savepoint released'));
    });
    expect(events.runs.map((run) => [run.label, run.committedRows])).toEqual([
      ['kept', 1],
      ['savepoint released', 1],
    ]);
  });

  it('runs once for a transaction that was retried after a serialization failure', async () => {
    let attempts = 0;
    await connection.transaction(
      async () => {
        attempts++;
        await writer.write(`retried ${attempts}`);
        if (attempts === 1) await connection.query("DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$");
      },
      { retry: { maxRetries: 2, initialDelayMs: 1 } },
    );
    expect(attempts).toBe(2);
    expect(events.runs.map((run) => [run.label, run.committedRows])).toEqual([['retried 2', 1]]);
  });

  it('runs the hooks of a requiresNew transaction at its own commit, even when the outer one rolls back', async () => {
    await expect(
      connection.transaction(async () => {
        await writer.separately('inner');
        expect(events.runs.map((run) => run.label)).toEqual(['inner']);
        throw new Error('outer fails');
      }),
    ).rejects.toThrow('outer fails');
    expect(events.runs.map((run) => [run.label, run.committedRows])).toEqual([['inner', 1]]);
  });

  it('logs a failing hook and still gives the caller its result', async () => {
    const result = await connection.transaction(async () => {
      afterCommit(() => {
        throw new Error('broker down');
      });
      return 'committed';
    });
    expect(result).toBe('committed');
    // Logged before the caller got its result: the hooks run before the transaction's promise settles.
    expect(logger.matching(/afterCommit\(\) hook failed \(broker down\); its transaction had committed/)).toHaveLength(1);
  });

  it('runs at once outside a transaction', async () => {
    const ran = new Deferred<string>();
    afterCommit(() => ran.resolve('ran'));
    expect(await ran.promise).toBe('ran');
  });

  it('leaves no transaction open and every client back', async () => {
    await expectNoOpenTransaction(app.get<Pool>(getPoolToken()), db.name);
  });
});
