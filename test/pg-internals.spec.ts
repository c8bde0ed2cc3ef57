import pg, { type TransactionStatus } from 'pg';
import { sendCancelRequest } from '../lib/connection/cancel-request.js';
import { backendKeyOf, forgetDeallocatedStatements, reportedSetting, trackReportedSettings, whenReadyForQuery } from '../lib/connection/pg-client-state.js';
import { serverConfig, waitForRunningQuery } from './support/database.js';

// lib/connection/pg-client-state.ts reads what node-postgres keeps on a client
// without a public API: processID, secretKey, readyForQuery, and on
// client.connection the 'readyForQuery' and 'parameterStatus' events and the
// parsedStatements cache.
// Each has a fallback there, which would quietly degrade the module (no
// cancel, a stale transaction status, a named statement failing with 26000):
// this suite fails instead, on a real client, when one goes missing or
// changes shape in a new pg release.

/** The internals, as pg-client-state.ts reads them. */
interface Internals {
  processID: unknown;
  secretKey: unknown;
  readyForQuery: unknown;
  connection: { parsedStatements: unknown; once: unknown; off: unknown; listenerCount(event: string): number };
}

describe('node-postgres internals the module reads', () => {
  let pool: pg.Pool;
  let client: pg.PoolClient;
  let internals: Internals;
  beforeAll(() => (pool = new pg.Pool({ ...serverConfig(), max: 1 })));
  afterAll(() => pool.end());
  beforeEach(async () => {
    client = await pool.connect();
    internals = client as unknown as Internals;
  });
  // Destroyed, not reused: each test starts on a fresh connection.
  afterEach(() => client.release(true));

  it('processID and secretKey: the backend key of the handshake, integers, and enough to cancel a query', async () => {
    const { rows } = await client.query<{ pid: number; database: string }>('SELECT pg_backend_pid() AS pid, current_database() AS database');
    expect(internals.processID).toBe(rows[0].pid);
    expect(Number.isInteger(internals.secretKey)).toBe(true);
    const key = backendKeyOf(client);
    expect(key).toEqual({ host: client.host, port: client.port, processID: rows[0].pid, secretKey: internals.secretKey });

    const cancelled = expect(client.query('SELECT pg_sleep(30)')).rejects.toMatchObject({ code: '57014' });
    // A backend still reading the query would ignore the cancel.
    await waitForRunningQuery(rows[0].database, rows[0].pid, 'pg_sleep(30)');
    await expect(sendCancelRequest(key!)).resolves.toBe(true);
    await cancelled;
  });

  it('readyForQuery: a boolean, false from sending a query until its ReadyForQuery', async () => {
    expect(internals.readyForQuery).toBe(true);
    const running = client.query('SELECT 1');
    expect(internals.readyForQuery).toBe(false);
    await running;
    expect(internals.readyForQuery).toBe(true);
  });

  it("connection 'readyForQuery': emitted after a failed query's callback, with the transaction status then current", async () => {
    expect(typeof internals.connection.once).toBe('function');
    expect(typeof internals.connection.off).toBe('function');
    await client.query('BEGIN');
    const statusAtReady = await new Promise<TransactionStatus>((resolve) => {
      client.query('SELECT 1/0', (error) => {
        expect(error).toMatchObject({ code: '22012' });
        // The failure is called back before the ReadyForQuery behind it.
        expect(internals.readyForQuery).toBe(false);
        whenReadyForQuery(client, () => resolve(client.getTransactionStatus()));
      });
    });
    expect(statusAtReady).toBe('E');
    expect(internals.connection.listenerCount('readyForQuery')).toBe(1); // pg's own, ours removed
    await client.query('ROLLBACK');
  });

  it('connection.parsedStatements: the statement texts by name, which forgetDeallocatedStatements() corrects', async () => {
    const named = { name: 'npp_internals', text: 'SELECT 42 AS answer' };
    await client.query(named);
    expect(internals.connection.parsedStatements).toEqual({ npp_internals: named.text });

    await client.query('DEALLOCATE npp_internals');
    await forgetDeallocatedStatements(client);
    expect(internals.connection.parsedStatements).toEqual({});
    // Parsed again, rather than failing with 26000 (prepared statement does not exist).
    await expect(client.query(named)).resolves.toMatchObject({ rows: [{ answer: 42 }] });
  });

  it("connection 'parameterStatus': the settings the server reports, at startup and as they change", async () => {
    const own = new pg.Client(serverConfig());
    expect(trackReportedSettings(own)).toBe(true);
    await own.connect();
    try {
      const { rows } = await own.query<{ version: number }>("SELECT current_setting('server_version_num')::int AS version");
      expect(reportedSetting(own, 'server_version')).toMatch(/^\d+/);
      // Reported from PostgreSQL 14; host targeting asks the server instead before that.
      if (rows[0].version < 140000) return;
      expect(reportedSetting(own, 'in_hot_standby')).toBe('off');
      expect(reportedSetting(own, 'default_transaction_read_only')).toBe('off');
      await own.query('SET default_transaction_read_only = on');
      expect(reportedSetting(own, 'default_transaction_read_only')).toBe('on');
    } finally {
      await own.end();
    }
  });
});
