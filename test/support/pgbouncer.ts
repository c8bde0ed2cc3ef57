import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PoolModuleOptions } from '../../lib/index.js';
import { serverConfig, serverPassword, waitFor } from './database.js';
import { connectionUrl } from './connection-url.js';
import { freePort } from './free-port.js';

export interface PgBouncer {
  readonly port: number;
  /** Options that reach `database` through this PgBouncer, as the server's user or as one of `logins`. */
  optionsFor(database: string, login?: Login): PoolModuleOptions;
  /** False once the process has exited (stopped, or died of a FATAL error). */
  readonly running: boolean;
  /** What PgBouncer has logged so far. */
  log(): string;
  /** Stops PgBouncer (if it still runs) and removes its folder. */
  stop(): Promise<void>;
}

/**
 * Starts a PgBouncer of the test's own in transaction mode, in front of the
 * machine's PostgreSQL, with at most `poolSize` server connections per
 * database. Clients authenticate with scram-sha-256, as in production, with
 * the server's password (PgBouncer logs in to the server with it too); a
 * server with trust authentication gets a made-up one, which it ignores.
 * PgBouncer refuses to run as root, so as root it runs as `postgres`.
 */
/** A user and password PgBouncer accepts (and logs in to the server with) besides the server's own user. */
export interface Login {
  user: string;
  password: string;
}

export async function startPgBouncer(poolSize: number, logins: Login[] = []): Promise<PgBouncer> {
  const dir = mkdtempSync(join(tmpdir(), 'npp-pgbouncer-'));
  const port = await freePort();
  const server = serverConfig();
  const { username: user, hostname: host, port: serverPort } = new URL(connectionUrl(server));
  const password = serverPassword() ?? 'npp-bouncer-secret';
  const users = [{ user: decodeURIComponent(user), password }, ...logins];
  writeFileSync(join(dir, 'users.txt'), users.map((login) => `"${login.user}" "${login.password.replaceAll('"', '""')}"\n`).join(''));
  writeFileSync(
    join(dir, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${host} port=${serverPort || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = scram-sha-256',
      `auth_file = ${join(dir, 'users.txt')}`,
      'pool_mode = transaction',
      `default_pool_size = ${poolSize}`,
      'max_client_conn = 500',
      'server_reset_query =',
      'ignore_startup_parameters = extra_float_digits,statement_timeout,options',
      `pidfile = ${join(dir, 'pgbouncer.pid')}`,
      `logfile = ${join(dir, 'pgbouncer.log')}`,
      '',
    ].join('\n'),
  );
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
    for (const file of ['', 'users.txt', 'pgbouncer.ini']) chownSync(join(dir, file), uid, gid);
  }
  const command = asRoot ? ['runuser', '-u', 'postgres', '--', 'pgbouncer'] : ['pgbouncer'];
  try {
    execFileSync(command[0], [...command.slice(1), '-d', join(dir, 'pgbouncer.ini')]);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  const pid = await waitFor(async () => {
    try {
      const written = Number(readFileSync(join(dir, 'pgbouncer.pid'), 'utf8'));
      // A pid file being written reads empty, i.e. 0: signalling pid 0 would hit this process group.
      return Number.isInteger(written) && written > 0 ? written : undefined;
    } catch {
      return undefined;
    }
  }, 'PgBouncer to start');
  const logFile = join(dir, 'pgbouncer.log');
  return {
    port,
    optionsFor: (database, login = users[0]) => ({ host: '127.0.0.1', port, user: login.user, password: login.password, database, transactionPooling: true }),
    get running() {
      return isAlive(pid);
    },
    log: () => readFileSync(logFile, 'utf8'),
    stop: async () => {
      if (isAlive(pid)) process.kill(pid, 'SIGINT');
      await waitFor(async () => (isAlive(pid) ? undefined : true), 'PgBouncer to stop');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
