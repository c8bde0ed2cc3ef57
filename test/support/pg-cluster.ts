import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFile, chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { queryOnce, waitFor } from './database.js';
import { freePort } from './free-port.js';
import { serverBinDir } from './server-binaries.js';

const run = promisify(execFile);
const OS_USER = 'postgres';

/**
 * A throwaway PostgreSQL cluster of a suite's own, to stop and start
 * at will (the shared server on 5432 is never touched): initdb into a temp
 * folder, a free port, a socket folder of its own; `destroy()` stops it and
 * removes both folders. PostgreSQL refuses to run as root, so when the suite
 * runs as root every server command runs as the `postgres` OS user.
 */
export class PgCluster {
  private running = false;
  /** Set by create({ production: true }): the superuser's password, and TLS on. */
  private password: string | undefined = undefined;

  private constructor(
    private readonly bin: string,
    private readonly root: string,
    readonly port: number,
  ) {}

  readonly host = '127.0.0.1';

  private get dataDir(): string {
    return join(this.root, 'data');
  }

  /**
   * A new cluster with trust authentication; with `production`, configured
   * as production servers are: `scram-sha-256` passwords for every
   * connection and TLS (a self-signed certificate made for it), so that a
   * new connection costs what it costs there.
   */
  static async create(options: { production?: boolean } = {}): Promise<PgCluster> {
    return PgCluster.make(async (cluster) => {
      const auth = ['-A', 'trust'];
      if (options.production) {
        cluster.password = randomBytes(12).toString('hex');
        await cluster.writeOwnFile('pwfile', cluster.password);
        auth.splice(0, 2, '-A', 'scram-sha-256', `--pwfile=${join(cluster.root, 'pwfile')}`);
        const tls = ['-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1'];
        await run('openssl', ['req', ...tls, '-keyout', join(cluster.root, 'server.key'), '-out', join(cluster.root, 'server.crt')]);
        await cluster.ownFiles('server.key', 'server.crt');
      }
      await cluster.pg('initdb', ['-D', cluster.dataDir, ...auth, '-U', 'postgres', '--no-sync', '--no-instructions']);
    });
  }

  /**
   * A hot standby streaming from `primary`: `pg_basebackup -R` into a folder
   * of its own (initdb's trust setup already lets 127.0.0.1 replicate).
   */
  static async replicaOf(primary: PgCluster): Promise<PgCluster> {
    return PgCluster.make((cluster) =>
      cluster.pg('pg_basebackup', [
        ...['-D', cluster.dataDir, '-h', primary.host, '-p', String(primary.port), '-U', 'postgres'],
        ...['-R', '-X', 'stream', '--no-sync'],
      ]),
    );
  }

  /** A folder the server's OS user owns, a free port, `fill` to lay the data folder, then a start. */
  private static async make(fill: (cluster: PgCluster) => Promise<void>): Promise<PgCluster> {
    const bin = await serverBinDir();
    const root = await mkdtemp(join(tmpdir(), 'npp-pg-'));
    try {
      if (isRoot()) {
        const { stdout } = await run('id', ['-u', OS_USER]);
        const { stdout: gid } = await run('id', ['-g', OS_USER]);
        await chown(root, Number(stdout.trim()), Number(gid.trim()));
      }
      const cluster = new PgCluster(bin, root, await freePort());
      await fill(cluster);
      await cluster.start();
      return cluster;
    } catch (error) {
      await rm(root, { recursive: true, force: true });
      throw error;
    }
  }

  /** Connection settings of the cluster's `database` (default `postgres`). */
  options(database = 'postgres'): { host: string; port: number; user: string; database: string; password?: string; ssl?: { rejectUnauthorized: false } } {
    const production = this.password ? { password: this.password, ssl: { rejectUnauthorized: false as const } } : {};
    return { host: this.host, port: this.port, user: 'postgres', database, ...production };
  }

  /** Runs one statement on `database` of the cluster. */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    database: string,
    text: string,
    values?: unknown[],
  ): Promise<pg.QueryResult<R>> {
    return queryOnce(this.options(database), text, values);
  }

  /** Starts the server and waits until it accepts connections. */
  async start(): Promise<void> {
    const serverOptions = [
      `-p ${this.port}`,
      `-k ${this.root}`,
      '-c listen_addresses=127.0.0.1',
      '-c fsync=off',
      '-c max_connections=40',
      '-c shared_buffers=16MB',
      ...(this.password ? [`-c ssl=on -c ssl_cert_file=${join(this.root, 'server.crt')} -c ssl_key_file=${join(this.root, 'server.key')}`] : []),
    ].join(' ');
    await this.pg('pg_ctl', ['-D', this.dataDir, '-l', join(this.root, 'server.log'), '-o', serverOptions, '-w', '-t', '30', 'start']);
    this.running = true;
  }

  /**
   * Stops the server: `fast` terminates every session (FATAL 57P01 to each)
   * and shuts down cleanly; `immediate` kills it, as a crash would, and the
   * next start recovers.
   */
  async stop(mode: 'fast' | 'immediate'): Promise<void> {
    this.running = false;
    await this.pg('pg_ctl', ['-D', this.dataDir, '-m', mode, '-w', '-t', '30', 'stop']);
  }

  /**
   * Promotes this standby (`pg_ctl promote`) and waits until it takes a
   * write: pg_ctl's wait ends when the server leaves recovery, a moment
   * before it assigns transaction ids.
   */
  async promote(): Promise<void> {
    await this.pg('pg_ctl', ['-D', this.dataDir, '-w', '-t', '30', 'promote']);
    await waitFor(() => this.query('postgres', 'SELECT pg_current_xact_id()').then(() => true, () => undefined), `${this.port} to take writes`);
  }

  /**
   * Starts this stopped former primary again as a standby of `primary`, on
   * the new primary's timeline (a clean `-m fast` stop shipped all its WAL
   * first, so it can follow without `pg_rewind`).
   */
  async restartAsStandbyOf(primary: PgCluster): Promise<void> {
    await this.writeOwnFile(join('data', 'standby.signal'), '');
    const conninfo = `host=${primary.host} port=${primary.port} user=postgres application_name=${this.port}`;
    await appendFile(join(this.dataDir, 'postgresql.auto.conf'), `primary_conninfo = '${conninfo}'\n`);
    await this.start();
  }

  /** Waits until this standby has replayed everything `primary` wrote so far. */
  async catchUpWith(primary: PgCluster): Promise<void> {
    const { rows } = await primary.query<{ lsn: string }>('postgres', 'SELECT pg_current_wal_lsn()::text AS lsn');
    await waitFor(async () => {
      const replayed = await this.query<{ done: boolean }>('postgres', 'SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [rows[0].lsn]);
      return replayed.rows[0].done ? true : undefined;
    }, `${this.port} to replay ${primary.port}'s WAL up to ${rows[0].lsn}`);
  }

  /**
   * Makes every commit wait for a standby to have it (`synchronous_standby_names = '*'`),
   * or not; on, it waits until a standby streams as synchronous.
   */
  async synchronousReplication(on: boolean): Promise<void> {
    await this.query('postgres', `ALTER SYSTEM SET synchronous_standby_names = '${on ? '*' : ''}'`);
    await this.query('postgres', 'SELECT pg_reload_conf()');
    if (!on) return;
    await waitFor(async () => {
      const { rows } = await this.query('postgres', "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'");
      return rows.length > 0 ? true : undefined;
    }, `a synchronous standby of ${this.port}`);
  }

  /**
   * Makes every new transaction read-only by default, as a primary being
   * demoted is made (or writable again), without a restart: sessions take it
   * at their next statement, and servers from PostgreSQL 14 report it to them.
   */
  async setReadOnly(readOnly: boolean): Promise<void> {
    const value = readOnly ? 'on' : 'off';
    await this.query('postgres', `ALTER SYSTEM SET default_transaction_read_only = ${value}`);
    await this.query('postgres', 'SELECT pg_reload_conf()');
    // pg_reload_conf() only signals the postmaster. A new session is forked with
    // the postmaster's settings, and the postmaster signals the running sessions
    // once it has read the file: when a new session sees the value, they have been told.
    await waitFor(async () => {
      const { rows } = await this.query<{ value: string }>('postgres', "SELECT current_setting('default_transaction_read_only') AS value");
      return rows[0].value === value ? true : undefined;
    }, `default_transaction_read_only = ${value} on ${this.port}`);
  }

  /** Waits until no session of the server holds a transaction id: after setReadOnly(true), those begun before may still write and commit. */
  async writesEnded(): Promise<void> {
    await waitFor(async () => {
      const { rows } = await this.query('postgres', 'SELECT 1 FROM pg_stat_activity WHERE backend_xid IS NOT NULL');
      return rows.length === 0 ? true : undefined;
    }, `the writing transactions of ${this.port} to end`);
  }

  /** Client sessions open on `database` (this query's own excluded). */
  async sessionCount(database: string): Promise<number> {
    const { rows } = await this.query<{ count: number }>(
      'postgres',
      "SELECT count(*)::int AS count FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = $1 AND pid <> pg_backend_pid()",
      [database],
    );
    return rows[0].count;
  }

  /** Stops the server if it runs, then removes its folders. */
  async destroy(): Promise<void> {
    try {
      if (this.running) await this.stop('immediate');
    } finally {
      await rm(this.root, { recursive: true, force: true });
    }
  }

  /** Writes `name` in the cluster's folder, readable by the server's OS user alone. */
  private async writeOwnFile(name: string, content: string): Promise<void> {
    await writeFile(join(this.root, name), content, { mode: 0o600 });
    await this.ownFiles(name);
  }

  /** Gives `files` (in the cluster's folder) to the server's OS user, readable by it alone, as PostgreSQL wants of a key. */
  private async ownFiles(...files: string[]): Promise<void> {
    for (const file of files.map((name) => join(this.root, name))) {
      await chmod(file, 0o600);
      if (isRoot()) {
        const { stdout: uid } = await run('id', ['-u', OS_USER]);
        const { stdout: gid } = await run('id', ['-g', OS_USER]);
        await chown(file, Number(uid.trim()), Number(gid.trim()));
      }
    }
  }

  private async pg(command: string, args: string[]): Promise<void> {
    const binary = join(this.bin, command);
    const [file, argv] = isRoot() ? ['runuser', ['-u', OS_USER, '--', binary, ...args]] : [binary, args];
    try {
      await run(file, argv, { cwd: this.root, timeout: 60_000 });
    } catch (error) {
      const { stdout, stderr } = error as { stdout?: string; stderr?: string };
      throw new Error(`${command} ${args.join(' ')} failed: ${(error as Error).message}\n${stdout ?? ''}${stderr ?? ''}`);
    }
  }
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}
