import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { delimiter, join } from 'node:path';
import { serverBinDir } from './server-binaries.ts';

// Loaded by Jest's global setup, which resolves no module mapping: the project's files are imported by their .ts names.

/** Services of the machine that suites use beside the PostgreSQL under test. */
export const SERVICES = {
  redis: { host: '127.0.0.1', port: 6379 },
  rabbitmq: { host: '127.0.0.1', port: 5672 },
} as const;

/** What a suite may need beside the PostgreSQL under test, and how it is missing. */
type Need = keyof typeof SERVICES | 'pgbouncer' | 'server binaries' | 'pg_basebackup';

// Set by probeNeeds() for the workers: each missing need and why, one per line.
const MISSING = 'NPP_TEST_MISSING';

/**
 * Probes every need once, at the start of the run (global-setup.ts); records
 * the missing ones for `whenAvailable()`. In CI (CI=true) a missing one fails
 * the run instead: there, everything must be present and nothing skipped.
 */
export async function probeNeeds(): Promise<void> {
  const missing: string[] = [];
  for (const [name, address] of Object.entries(SERVICES)) {
    if (!(await accepts(address))) missing.push(`${name}\tnothing answers on ${address.host}:${address.port}`);
  }
  if (!onPath('pgbouncer')) missing.push('pgbouncer\tno pgbouncer on PATH (Debian: apt-get install pgbouncer)');
  const bin = await serverBinDir().catch(() => undefined);
  if (!bin) missing.push('server binaries\tno PostgreSQL server binaries (initdb, pg_ctl): set PG_BIN to their folder');
  if (!bin || !existsSync(join(bin, 'pg_basebackup'))) missing.push('pg_basebackup\tno pg_basebackup beside the server binaries (set PG_BIN)');
  if (missing.length > 0 && process.env.CI === 'true') {
    throw new Error(`CI needs every service and tool the suites use; missing:\n${missing.join('\n')}`);
  }
  process.env[MISSING] = missing.join('\n');
}

/** `it`, or `it.skip` with a printed reason when `need` was missing at the start of the run. */
export function whenAvailable(need: Need, what: string): jest.It {
  const line = (process.env[MISSING] ?? '').split('\n').find((entry) => entry.startsWith(`${need}\t`));
  if (!line) return it;
  process.stdout.write(`[skipped] ${what}: ${line.split('\t')[1]}\n`);
  return it.skip;
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, command)));
}

export function accepts({ host, port }: { host: string; port: number }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1000 });
    const settle = (reachable: boolean): void => {
      socket.destroy();
      resolve(reachable);
    };
    socket.once('connect', () => settle(true)).once('timeout', () => settle(false)).once('error', () => settle(false));
  });
}
