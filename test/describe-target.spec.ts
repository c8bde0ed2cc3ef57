import pg from 'pg';
import { connectionTarget, describeTarget, redactSecrets } from '../lib/datasource/describe-target.js';
import { serverConfig } from './support/database.js';

// The target named in errors, logs and telemetry must be the one pg dials:
// the options, else the connection string, else the PG* variables, else pg's defaults.

describe('connectionTarget', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const name of ['PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE']) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  it('reads a connection string, where options beside it do not override it', () => {
    expect(connectionTarget({ connectionString: 'postgres://app:secret@db.internal:6543/shop', database: 'other' })).toEqual({
      user: 'app',
      host: 'db.internal',
      port: 6543,
      database: 'shop',
    });
  });

  it('reads a Unix socket directory given as the host of a connection string', () => {
    // No port in the string: node-postgres takes PGPORT, else 5432 (the embedded servers' CI lines set PGPORT).
    expect(connectionTarget({ connectionString: 'postgresql://app@%2Fvar%2Frun%2Fpostgresql/shop' })).toMatchObject({
      host: '/var/run/postgresql',
      port: Number(process.env.PGPORT ?? 5432),
    });
  });

  it('falls back on the PG* variables, then on pg.defaults', () => {
    process.env.PGHOST = 'env-host';
    process.env.PGUSER = 'env-user';
    delete process.env.PGPORT;
    delete process.env.PGDATABASE;
    expect(connectionTarget({ port: 7777 })).toEqual({ user: 'env-user', host: 'env-host', port: 7777, database: 'env-user' });
    delete process.env.PGHOST;
    expect(connectionTarget({ user: 'u' })).toMatchObject({ host: pg.defaults.host, port: pg.defaults.port });
  });

  it('says so for a connection string pg cannot parse, without repeating it', () => {
    const connectionString = 'postgres://app:s3cret@db:port/shop';
    expect(connectionTarget({ connectionString })).toBeUndefined();
    expect(describeTarget({ connectionString })).toBe('an unparsable connection string');
  });

  it('never runs a stream factory of the options', () => {
    let streams = 0;
    const stream = (): undefined => void streams++;
    expect(describeTarget({ host: 'h', port: 1, user: 'u', database: 'd', stream })).toBe('u@h:1/d');
    expect(streams).toBe(0);
  });

  it('never calls a password function (node-postgres calls it for each connection, the module never)', () => {
    let calls = 0;
    const password = (): string => {
      calls++;
      return 'Rotated-Secret';
    };
    expect(describeTarget({ host: 'h', port: 1, user: 'u', database: 'd', password })).toBe('u@h:1/d');
    expect(redactSecrets('password authentication failed for user "u"', { password })).toBe('password authentication failed for user "u"');
    expect(calls).toBe(0);
  });

  it('is where a client of the same options connects', async () => {
    const options = serverConfig();
    const client = new pg.Client(options);
    await client.connect();
    try {
      const { rows } = await client.query<{ user: string; database: string; port: number }>(
        'SELECT current_user AS "user", current_database() AS database, current_setting(\'port\')::int AS port',
      );
      expect(connectionTarget(options)).toMatchObject(rows[0]);
    } finally {
      await client.end();
    }
  });
});
