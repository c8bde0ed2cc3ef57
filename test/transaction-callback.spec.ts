import type { INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DatabaseError, type Pool } from 'pg';
import {
  ConnectionScope,
  getConnectionToken,
  getPoolToken,
  InvalidTransactionOptionsError,
  PoolConnection,
  PoolModule,
  TransactionAbortedError,
  TransactionBusyError,
  TransactionFinishedError,
  TransactionOptionsConflictError,
  type IsolationLevel,
  type Transaction,
} from '../lib/index.js';
import { adminQuery, createTestDatabase, type TestDatabase } from './support/database.js';
import { expectNoOpenTransaction, Gate } from './support/transactions.js';

const PID = 'SELECT pg_backend_pid() AS pid';

describe('connection.transaction()', () => {
  let db: TestDatabase;
  let app: INestApplicationContext;
  let connection: PoolConnection;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('tx_callback');
    const moduleRef = await Test.createTestingModule({ imports: [PoolModule.forRoot({ ...db.options, max: 4 })] }).compile();
    moduleRef.useLogger(false);
    app = await moduleRef.init();
    connection = app.get(getConnectionToken());
    pool = app.get(getPoolToken());
    await pool.query('CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL)');
  });

  beforeEach(() => pool.query('TRUNCATE items'));
  afterEach(() => expectNoOpenTransaction(pool, db.name));

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const add = (label: string): Promise<unknown> => connection.query('INSERT INTO items (label) VALUES ($1)', [label]);
  const labels = async (): Promise<string[]> =>
    (await pool.query<{ label: string }>('SELECT label FROM items ORDER BY id')).rows.map((row) => row.label);

  it('commits when the work resolves and returns its result', async () => {
    const result = await connection.transaction(async (tx) => {
      await add('a');
      await tx.query('INSERT INTO items (label) VALUES ($1)', ['b']);
      return 42;
    });
    expect(result).toBe(42);
    expect(await labels()).toEqual(['a', 'b']);
  });

  it('rolls back when the work throws and rethrows the very same error', async () => {
    const failure = new Error('work failed');
    await expect(
      connection.transaction(async () => {
        await add('lost');
        throw failure;
      }),
    ).rejects.toBe(failure);
    const divide = connection.transaction(async () => {
      await add('lost too');
      await connection.query('SELECT 1/0');
    });
    await expect(divide).rejects.toBeInstanceOf(DatabaseError);
    await expect(divide).rejects.toMatchObject({ code: '22012' });
    expect(await labels()).toEqual([]);
  });

  it('runs all its queries on one backend in one transaction, in a scope of its own outside requests', async () => {
    const seen = await connection.transaction(async (tx) => {
      const sql = 'SELECT pg_backend_pid() AS pid, txid_current() AS txid';
      const client = await connection.getClient();
      const results = [await connection.query(sql), await tx.query(sql), await client.query(sql)];
      return results.map((result) => JSON.stringify(result.rows[0]));
    });
    expect(new Set(seen).size).toBe(1);
  });

  it('begins with the isolation level, read only and deferrable modes asked for', async () => {
    const modes = await connection.transaction(
      async () =>
        (
          await connection.query(
            `SELECT current_setting('transaction_isolation') AS isolation,
                    current_setting('transaction_read_only') AS read_only,
                    current_setting('transaction_deferrable') AS deferrable`,
          )
        ).rows[0],
      { isolationLevel: 'serializable', readOnly: true, deferrable: true },
    );
    expect(modes).toEqual({ isolation: 'serializable', read_only: 'on', deferrable: 'on' });
    await expect(connection.transaction(() => add('refused'), { readOnly: true })).rejects.toMatchObject({ code: '25006' });
    const repeatable = await connection.transaction(
      async () => (await connection.query("SELECT current_setting('transaction_isolation') AS isolation")).rows[0],
      { isolationLevel: 'repeatable read' },
    );
    expect(repeatable).toEqual({ isolation: 'repeatable read' });
  });

  it('rolls a failed nested transaction back to its savepoint and lets the outer one commit the rest', async () => {
    await connection.transaction(async (outer) => {
      expect(outer.depth).toBe(0);
      await add('before');
      const inner = connection.transaction(async (savepoint) => {
        expect(savepoint.depth).toBe(1);
        await add('undone');
        await connection.query('SELECT 1/0');
      });
      await expect(inner).rejects.toMatchObject({ code: '22012' });
      await connection.transaction(() => add('nested and kept'));
      await add('after');
    });
    expect(await labels()).toEqual(['before', 'nested and kept', 'after']);
  });

  it('runs concurrent transactions of one scope one after the other on its client', async () => {
    const seen = await ConnectionScope.run(() =>
      Promise.all(
        ['t1', 't2', 't3'].map((label) =>
          connection.transaction(async () => {
            const { rows } = await connection.query<{ pid: number; txid: string }>('SELECT pg_backend_pid() AS pid, txid_current() AS txid');
            await add(label);
            return rows[0];
          }),
        ),
      ),
    );
    expect(new Set(seen.map((row) => row.pid)).size).toBe(1);
    expect(new Set(seen.map((row) => row.txid)).size).toBe(3);
    expect((await labels()).sort()).toEqual(['t1', 't2', 't3']);
  });

  it('runs concurrent savepoints one after the other, so one failing does not undo the other', async () => {
    await connection.transaction(async () => {
      const outcomes = await Promise.allSettled([
        connection.transaction(async () => {
          await add('undone');
          await connection.query('SELECT 1');
          throw new Error('first savepoint failed');
        }),
        connection.transaction(() => add('kept')),
      ]);
      expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'fulfilled']);
    });
    expect(await labels()).toEqual(['kept']);
  });

  it('makes the scope queries made outside a running transaction wait until it ends', async () => {
    const gate = new Gate();
    const { reached, open } = gate.close();
    await ConnectionScope.run(async () => {
      const transaction = connection.transaction(async () => {
        await add('in the transaction');
        await gate.pass();
      });
      await reached;
      const outside = connection.query<{ txid: string | null }>('SELECT txid_current_if_assigned() AS txid');
      open();
      await transaction;
      // Inside the transaction it would have seen the transaction id its INSERT was given.
      expect((await outside).rows[0].txid).toBeNull();
    });
  });

  it('refuses commit, rollback and queries once the transaction has ended', async () => {
    let escaped: Transaction | undefined;
    await connection.transaction(async (tx) => {
      escaped = tx;
      await add('committed early');
      await tx.commit();
      expect(tx.isActive).toBe(false);
      await expect(tx.commit()).rejects.toBeInstanceOf(TransactionFinishedError);
      await expect(connection.query('SELECT 1')).rejects.toBeInstanceOf(TransactionFinishedError);
    });
    await expect(escaped!.commit()).rejects.toThrow(/Cannot commit: the transaction on datasource "default" has already been/);
    await expect(escaped!.rollback()).rejects.toBeInstanceOf(TransactionFinishedError);
    await expect(escaped!.query('SELECT 1')).rejects.toBeInstanceOf(TransactionFinishedError);
    expect(await labels()).toEqual(['committed early']);
  });

  it('rolls back on rollback() without an error and still returns the result', async () => {
    const result = await connection.transaction(async (tx) => {
      await add('dry run');
      await tx.rollback();
      return 'nothing written';
    });
    expect(result).toBe('nothing written');
    expect(await labels()).toEqual([]);
  });

  it('refuses to commit work that caught the error of a failed statement', async () => {
    const swallowed = connection.transaction(async () => {
      await add('lost');
      await connection.query('SELECT 1/0').catch(() => undefined);
    });
    await expect(swallowed).rejects.toBeInstanceOf(TransactionAbortedError);
    expect(await labels()).toEqual([]);
    await connection.transaction(async () => {
      const nested = connection.transaction(async () => {
        await add('lost in the savepoint');
        await connection.query('SELECT 1/0').catch(() => undefined);
      });
      await expect(nested).rejects.toBeInstanceOf(TransactionAbortedError);
      await add('kept');
    });
    expect(await labels()).toEqual(['kept']);
  });

  it('refuses to end a transaction while a nested one in it runs', async () => {
    const gate = new Gate();
    const { reached, open } = gate.close();
    await connection.transaction(async (outer) => {
      const inner = connection.transaction(() => gate.pass());
      await reached;
      await expect(outer.commit()).rejects.toBeInstanceOf(TransactionBusyError);
      open();
      await inner;
    });
  });

  it('closes a client whose rollback fails, rethrows the original error and goes on with a fresh client', async () => {
    const failure = new Error('work failed');
    await ConnectionScope.run(async () => {
      const { pid } = (await connection.query<{ pid: number }>(PID)).rows[0];
      const work = connection.transaction(async () => {
        await add('lost');
        // Waits (up to 5 s) for the backend to be gone: the ROLLBACK that follows cannot succeed.
        await adminQuery('SELECT pg_terminate_backend($1, 5000)', [pid]);
        throw failure;
      });
      await expect(work).rejects.toBe(failure);
      const next = (await connection.query<{ pid: number }>(PID)).rows[0].pid;
      expect(next).not.toBe(pid);
    });
    expect(await labels()).toEqual([]);
  });

  it('rejects invalid options with a typed error naming the option', async () => {
    const work = async (): Promise<number> => 1;
    await expect(connection.transaction(work, { isolationLevel: 'chaos' as IsolationLevel })).rejects.toMatchObject({
      name: InvalidTransactionOptionsError.name,
      option: 'isolationLevel',
    });
    await expect(connection.transaction(work, { retry: { maxRetries: -1 } })).rejects.toMatchObject({ option: 'retry.maxRetries' });
    await expect(connection.transaction(work, { retry: { maxRetries: 2, initialDelayMs: Number.NaN } })).rejects.toMatchObject({
      option: 'retry.initialDelayMs',
    });
    await expect(connection.transaction(work, { readOnly: 'yes' as unknown as boolean })).rejects.toBeInstanceOf(InvalidTransactionOptionsError);
  });

  it('refuses to nest a transaction that asks for more than the running one gives', async () => {
    await connection.transaction(async () => {
      await expect(connection.transaction(async () => 1, { isolationLevel: 'serializable' })).rejects.toBeInstanceOf(
        TransactionOptionsConflictError,
      );
      await expect(connection.transaction(async () => 1, { isolationLevel: 'read committed' })).resolves.toBe(1);
    });
    await connection.transaction(
      async () => {
        await expect(connection.transaction(async () => 1, { readOnly: false })).rejects.toBeInstanceOf(TransactionOptionsConflictError);
      },
      { readOnly: true },
    );
  });
});
