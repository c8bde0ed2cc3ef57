import { Test, type TestingModule } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import {
  AuthenticationFailedError,
  DatabaseUnreachableError,
  getConnectionToken,
  getPoolToken,
  PoolConnection,
  PoolModule,
  type PoolModuleOptions,
} from '../lib/index.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { serverAddress } from './support/connection-url.js';
import { adminQuery, createTestDatabase, waitFor, type TestDatabase } from './support/database.js';
import { TcpProxy } from './support/tcp-proxy.js';

// Every boot ends, started or failed, and leaves nothing open: a startup that
// cannot open what it asked for, a server that refuses the role, a server
// that stops answering; and a shutdown ends though a client is never handed back.

const SECRET = `Boot-Secret-${randomBytes(4).toString('hex')}`;

let db: TestDatabase;
const roles: string[] = [];

/** A role of its own (dropped after the suite), with `attributes` such as `LOGIN CONNECTION LIMIT 2` or `NOLOGIN`. */
async function createRole(attributes: string): Promise<string> {
  const role = `npp_boot_${randomBytes(4).toString('hex')}`;
  await adminQuery(`CREATE ROLE ${role} ${attributes} PASSWORD '${SECRET}'`);
  roles.push(role);
  return role;
}

/** The suite's server (or what listens at `address`) as `role`, in `database`. */
function asRole(role: string, database = db.name, address = serverAddress()): PoolModuleOptions {
  return { host: address.host, port: address.port, user: role, password: SECRET, database };
}

function compile(options: PoolModuleOptions, logger: CapturingLogger): Promise<TestingModule> {
  return Test.createTestingModule({ imports: [PoolModule.forRoot(options)] }).setLogger(logger).compile();
}

/** Initialises `moduleRef` as a bootstrap does; a failed one is closed, as Nest's bootstrap leaves it to the caller. */
async function boot(moduleRef: TestingModule): Promise<{ error?: unknown; millis: number }> {
  const started = performance.now();
  try {
    await moduleRef.init();
    return { millis: performance.now() - started };
  } catch (error) {
    await moduleRef.close();
    return { error, millis: performance.now() - started };
  }
}

function backendsOf(role: string): Promise<number> {
  return adminQuery<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1', [role]).then(({ rows }) => rows[0].n);
}

beforeAll(async () => {
  db = await createTestDatabase('boot');
});

afterAll(async () => {
  await db?.drop();
  for (const role of roles) await adminQuery(`DROP ROLE IF EXISTS ${role}`);
});

describe('a min the server cannot meet', () => {
  it('starts with the connections it opened, warns once, and leaves none open after close', async () => {
    const role = await createRole('LOGIN CONNECTION LIMIT 2');
    const logger = new CapturingLogger();
    const moduleRef = await compile({ ...asRole(role), name: 'orders', min: 4, max: 4, retryAttempts: 1, retryDelay: 10 }, logger);
    const { error, millis } = await boot(moduleRef);
    try {
      expect(error).toBeUndefined();
      // Well within Jest's timeout: the refusals come at once, nothing waits for connectionTimeoutMillis.
      expect(millis).toBeLessThan(5000);
      const warnings = logger.matching(/min 4/);
      // Two at most (the role's limit); one when the server still counts a backend of the role that is
      // exiting (seen once on a loaded CI line: a backend's exit is asynchronous on the server).
      expect(warnings).toEqual([
        expect.stringMatching(/^Datasource "orders": opened [12] of its min 4 connections at startup \(.*too many connections for role.*\); it starts with those/),
      ]);
      const opened = Number(/opened (\d)/.exec(warnings[0])?.[1]);
      expect(logger.messages.join('\n')).not.toContain(SECRET);
      // It serves on what it has.
      const connection = moduleRef.get<PoolConnection>(getConnectionToken('orders'));
      await expect(connection.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
      const pool = moduleRef.get<Pool>(getPoolToken('orders'));
      expect({ total: pool.totalCount, idle: pool.idleCount }).toEqual({ total: opened, idle: opened });
    } finally {
      await moduleRef.close();
    }
    await waitFor(async () => ((await backendsOf(role)) === 0 ? true : undefined), `no backend of ${role} left`);
  });
});

describe('a server that refuses the role', () => {
  it.each([
    ['a role that may not log in', 'NOLOGIN', undefined, '28000', /not permitted to log in/],
    ['a database that does not exist', 'LOGIN', 'npp_boot_no_such_database', '3D000', /does not exist/],
  ])('%s fails the boot with DatabaseUnreachableError, after its retries, without the password', async (_case, attributes, database, code, reason) => {
    const role = await createRole(attributes);
    const logger = new CapturingLogger();
    const { error, millis } = await boot(await compile({ ...asRole(role, database), name: 'orders', retryAttempts: 1, retryDelay: 10 }, logger));
    expect(error).toBeInstanceOf(DatabaseUnreachableError);
    const refused = error as DatabaseUnreachableError;
    expect({ datasource: refused.datasource, code: refused.code, attempts: refused.attempts }).toEqual({ datasource: 'orders', code, attempts: 2 });
    expect(refused.message).toMatch(/^Cannot connect datasource "orders" to /);
    expect(refused.reason).toMatch(reason);
    // A role refused is the server refusing the credentials; a database missing is not.
    expect(refused instanceof AuthenticationFailedError).toBe(code === '28000');
    if (code === '28000') expect(refused.reason).toMatch(/^authentication failed: /);
    expect(millis).toBeLessThan(5000);
    const everything = refused.message + refused.stack + JSON.stringify(refused) + logger.messages.join('\n');
    expect(everything).not.toContain(SECRET);
    expect(await backendsOf(role)).toBe(0);
  });
});

describe('a server that takes the connection and then says nothing', () => {
  let proxy: TcpProxy;
  beforeAll(async () => (proxy = await TcpProxy.start(serverAddress())));
  afterAll(() => proxy?.close());

  it('fails each startup attempt within connectionTimeoutMillis and closes the connection it gave up on', async () => {
    const role = await createRole('LOGIN');
    const logger = new CapturingLogger();
    const moduleRef = await compile(
      { ...asRole(role, db.name, { host: '127.0.0.1', port: proxy.port }), name: 'orders', connectionTimeoutMillis: 300, retryAttempts: 1, retryDelay: 10 },
      logger,
    );
    // As a pooler that accepted the login and waits for a database it cannot reach: silence after the handshake.
    const pool = moduleRef.get<Pool>(getPoolToken('orders'));
    pool.once('connect', () => proxy.blackhole());
    const { error, millis } = await boot(moduleRef);
    expect(error).toBeInstanceOf(DatabaseUnreachableError);
    expect((error as DatabaseUnreachableError).attempts).toBe(2);
    expect(logger.matching(/retrying/)).toEqual([expect.stringMatching(/cannot connect to .* \(no answer within 300 ms\); retrying \(1\/1\)/)]);
    // Two attempts of at most 300 ms each, then a close that does not wait on the silent connection.
    expect(millis).toBeLessThan(3000);
    expect(pool.totalCount).toBe(0);
    // The proxy sees the closes once it reads again.
    proxy.restore();
    await waitFor(async () => (proxy.openCount === 0 ? true : undefined), 'the connections through the proxy to be closed');
  });
});

describe('a shutdown with a client never handed back', () => {
  it('ends after drainTimeoutMillis with a warning, rather than wait for it', async () => {
    const logger = new CapturingLogger();
    const moduleRef = await compile({ ...db.options, drainTimeoutMillis: 200 }, logger);
    await moduleRef.init();
    const pool = moduleRef.get<Pool>(getPoolToken());
    // Taken from the injected pool, outside the module's leases: pg-pool's end() waits for it.
    const forgotten: PoolClient = await pool.connect();
    const closed = new Promise<void>((resolve) => pool.on('remove', (client) => client === forgotten && resolve()));
    const started = performance.now();
    await moduleRef.close();
    expect(performance.now() - started).toBeLessThan(2000);
    expect(logger.matching(/has not ended/)).toEqual([
      expect.stringMatching(/^Datasource "default": the pool has not ended 200 ms after its last lease: 1 connection\(s\)/),
    ]);
    forgotten.release();
    await closed;
    expect(pool.totalCount).toBe(0);
  });
});
