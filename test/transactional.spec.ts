import { Injectable, type INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Pool } from 'pg';
import {
  getConnectionToken,
  getPoolToken,
  InjectConnection,
  InvalidTransactionOptionsError,
  PoolConnection,
  PoolModule,
  Transactional,
  TransactionAbortedError,
  TransactionalDatasourceNotFoundError,
  TransactionalNotBoundError,
  TransactionOptionsConflictError,
  TransactionPropagationError,
  type Propagation,
} from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { expectNoOpenTransaction } from './support/transactions.js';

const TXID = 'SELECT pg_backend_pid() AS pid, txid_current_if_assigned()::text AS txid';
type Seen = { pid: number; txid: string | null };

@Injectable()
class Steps {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async seen(): Promise<Seen> {
    return (await this.connection.query<Seen>(TXID)).rows[0];
  }

  @Transactional()
  async joined(): Promise<Seen> {
    return this.seen();
  }

  @Transactional({ propagation: 'supports' })
  async supports(): Promise<Seen> {
    return this.seen();
  }

  @Transactional({ propagation: 'never' })
  async never(): Promise<Seen> {
    return this.seen();
  }

  @Transactional()
  async failing(): Promise<void> {
    await this.connection.query("INSERT INTO jobs (label) VALUES ('from the failing step')");
    throw new Error('step failed');
  }

  @Transactional({ isolationLevel: 'serializable' })
  async serializable(): Promise<Seen> {
    return this.seen();
  }
}

@Injectable()
class Job {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly steps: Steps,
  ) {}

  /** Like a cron job: called outside any request. */
  @Transactional()
  async run(): Promise<Seen[]> {
    await this.connection.query("INSERT INTO jobs (label) VALUES ('job')");
    return [await this.steps.seen(), await this.steps.joined(), await this.steps.supports()];
  }

  @Transactional()
  async callNever(): Promise<Seen> {
    await this.connection.query('SELECT txid_current()');
    return this.steps.never();
  }

  @Transactional()
  async catchFailingStep(): Promise<void> {
    await this.connection.query("INSERT INTO jobs (label) VALUES ('job')");
    await this.steps.failing().catch(() => undefined);
  }

  @Transactional()
  async callSerializable(): Promise<Seen> {
    return this.steps.serializable();
  }
}

describe('@Transactional() outside requests', () => {
  let db: TestDatabase;
  let app: INestApplicationContext;
  let pool: Pool;
  let job: Job;
  let steps: Steps;

  beforeAll(async () => {
    db = await createTestDatabase('tx_decorator');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 3 })],
      providers: [Job, Steps],
    }).compile();
    app = await moduleRef.init();
    pool = app.get(getPoolToken());
    job = app.get(Job);
    steps = app.get(Steps);
    await pool.query('CREATE TABLE jobs (id serial PRIMARY KEY, label text NOT NULL)');
  });

  beforeEach(() => pool.query('TRUNCATE jobs'));
  afterEach(() => expectNoOpenTransaction(pool, db.name));

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const labels = async (): Promise<string[]> =>
    (await pool.query<{ label: string }>('SELECT label FROM jobs ORDER BY id')).rows.map((row) => row.label);

  it('opens a scope of its own: one client and one transaction, which required and supports methods join', async () => {
    const seen = await job.run();
    expect(seen[0].txid).not.toBeNull();
    expect(seen.every((row) => row.pid === seen[0].pid && row.txid === seen[0].txid)).toBe(true);
    expect(await labels()).toEqual(['job']);
  });

  it('supports and never run without a transaction when none runs', async () => {
    await expect(steps.supports()).resolves.toMatchObject({ txid: null });
    await expect(steps.never()).resolves.toMatchObject({ txid: null });
  });

  it('never refuses to run inside a transaction', async () => {
    const failure = job.callNever();
    await expect(failure).rejects.toBeInstanceOf(TransactionPropagationError);
    await expect(failure).rejects.toThrow('Steps.never has propagation "never"');
  });

  it('rolls back the whole transaction when a method that joined it threw, even if the error was caught', async () => {
    await expect(job.catchFailingStep()).rejects.toBeInstanceOf(TransactionAbortedError);
    expect(await labels()).toEqual([]);
  });

  it('refuses to join a transaction weaker than the method asks for', async () => {
    await expect(job.callSerializable()).rejects.toBeInstanceOf(TransactionOptionsConflictError);
    await expect(steps.serializable()).resolves.toMatchObject({ txid: null });
  });

  it('refuses to run on an object no application created', async () => {
    const stray = new Steps(app.get(getConnectionToken()));
    const failure = stray.joined();
    await expect(failure).rejects.toBeInstanceOf(TransactionalNotBoundError);
    await expect(failure).rejects.toThrow(/Steps\.joined/);
  });
});

describe('@Transactional() at bootstrap', () => {
  let main: TestDatabase;
  let reports: TestDatabase;

  beforeAll(async () => {
    [main, reports] = await Promise.all([createTestDatabase('tx_main'), createTestDatabase('tx_reports')]);
  });

  afterAll(async () => {
    await Promise.all([main?.drop(), reports?.drop()]);
  });

  @Injectable()
  class WhereAmI {
    constructor(@InjectConnection('reports') private readonly connection: PoolConnection) {}

    /** The database the method ran on, and the isolation level, which only its transaction has. */
    @Transactional({ name: 'reports', isolationLevel: 'repeatable read' })
    async database(): Promise<string> {
      const sql = "SELECT current_database() || ' ' || current_setting('transaction_isolation') AS seen";
      return (await this.connection.query<{ seen: string }>(sql)).rows[0].seen;
    }
  }

  async function start(database: TestDatabase, providers: Array<new (...args: never[]) => object>): Promise<INestApplicationContext> {
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot(main.options), PoolModule.forRoot({ ...database.options, name: 'reports' })],
      providers,
    }).compile();
    return moduleRef.init();
  }

  it('fails when a decorated method names a datasource that does not exist, and closes the pools', async () => {
    @Injectable()
    class Misnamed {
      @Transactional({ name: 'archive' })
      async archive(): Promise<void> {}
    }
    const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot(main.options)], providers: [Misnamed] }).compile();
    moduleRef.useLogger(false);
    const pool = moduleRef.get<Pool>(getPoolToken());
    try {
      const failure = moduleRef.init();
      await expect(failure).rejects.toBeInstanceOf(TransactionalDatasourceNotFoundError);
      await expect(failure).rejects.toThrow('@Transactional() on Misnamed.archive: No datasource named "archive"');
      expect(pool.ended).toBe(true);
    } finally {
      await moduleRef.close();
    }
  });

  it('runs a method on the datasource it names, in the application that created its object', async () => {
    // Two applications in one process, sharing the class, each with its own "reports" database.
    const [first, second] = await Promise.all([start(reports, [WhereAmI]), start(main, [WhereAmI])]);
    try {
      const databases = await Promise.all([first.get(WhereAmI).database(), second.get(WhereAmI).database()]);
      expect(databases).toEqual([`${reports.name} repeatable read`, `${main.name} repeatable read`]);
      await expectNoOpenTransaction(first.get(getPoolToken('reports')), reports.name);
      await expectNoOpenTransaction(second.get(getPoolToken('reports')), main.name);
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });

  it('rejects invalid options where the decorator is applied', () => {
    expect(() => Transactional({ propagation: 'sometimes' as Propagation })).toThrow(InvalidTransactionOptionsError);
    expect(() => Transactional({ name: '' })).toThrow(/"name"/);
    expect(() => Transactional({ retry: { maxRetries: 1.5 } })).toThrow(/retry\.maxRetries/);
  });
});
