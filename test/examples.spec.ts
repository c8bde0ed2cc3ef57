import { readdirSync, readFileSync } from 'node:fs';
import { Test } from '@nestjs/testing';
import { PoolModule } from 'nestjs-pg-pool';
import pg from 'pg';
import { createTestDatabase } from './support/database.js';

const root = new URL('../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** The text an example marker names: a whole file, or the lines of one `// #region name` of it. */
function exampleText(reference: string): string {
  const [path, region] = reference.split('#');
  const text = read(path);
  if (!region) return text.trimEnd();
  const found = new RegExp(`^[ \\t]*// #region ${region}\n([\\s\\S]*?)^[ \\t]*// #endregion ${region}$`, 'm').exec(text);
  if (!found) throw new Error(`${path} has no region "${region}"`);
  const lines = found[1].trimEnd().split('\n');
  const indent = Math.min(...lines.filter((line) => line.trim()).map((line) => /^ */.exec(line)![0].length));
  return lines.map((line) => line.slice(indent)).join('\n');
}

const pages = ['README.md', ...readdirSync(new URL('docs/', root)).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];
const examplesDir = new URL('test/examples/', root);
const exampleFiles = readdirSync(examplesDir, { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.ts'));
// Specs among the examples run as tests of their own; the others are loaded below.
const exampleModules = exampleFiles.filter((name) => !name.endsWith('.spec.ts'));

describe('examples in the README and the docs', () => {
  const blocks = pages.flatMap((page) =>
    [...read(page).matchAll(/(?:<!-- example: (\S+) -->\n)?```(?:ts|typescript)\n([\s\S]*?)\n```/g)].map(([, reference, code]) => ({ page, reference, code })),
  );

  it('shows every TypeScript block as the example file it names (the files are type-checked by npm test)', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(15);
    for (const { page, reference, code } of blocks) {
      expect({ page, reference: reference ?? 'a TypeScript block with no <!-- example: --> marker' }).toEqual({ page, reference: expect.stringMatching(/^test\//) });
      expect({ page, reference, code }).toEqual({ page, reference, code: exampleText(reference!) });
    }
  });

  it('shows every example file somewhere', () => {
    const shown = new Set(blocks.map(({ reference }) => reference?.split('#')[0]));
    expect(exampleFiles.filter((name) => !shown.has(`test/examples/${name}`))).toEqual([]);
  });

  it('runs the first example against the database', async () => {
    const db = await createTestDatabase('readme');
    const saved = process.env.DATABASE_URL;
    const { user, host, port } = db.options as { user: string; host: string; port: number };
    process.env.DATABASE_URL = db.options.connectionString ?? `postgres://${user}@${host}:${port}/${db.name}`;
    await db.query("CREATE TABLE users (id int PRIMARY KEY, name text); INSERT INTO users VALUES (1, 'Ada')");
    try {
      const { AppModule, UsersRepository } = await import('./examples/basic.js');
      const app = await (await Test.createTestingModule({ imports: [AppModule] }).compile()).init();
      try {
        expect(await app.get(UsersRepository).findName(1)).toBe('Ada');
        expect(await app.get(UsersRepository).findName(2)).toBeUndefined();
      } finally {
        await app.close();
      }
    } finally {
      if (saved === undefined) delete process.env.DATABASE_URL;
      else process.env.DATABASE_URL = saved;
      await db.drop();
    }
  });

  it('runs the outside-request example: its lock is taken and released on one connection', async () => {
    const db = await createTestDatabase('outside_request');
    await db.query(`
      CREATE TABLE sessions (expires_at timestamptz);
      INSERT INTO sessions VALUES (now() - interval '1 day'), (now() - interval '1 hour'), (now() + interval '1 day');
      -- The DELETE must run on the session that holds the lock.
      CREATE FUNCTION require_lock() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND objid = 42 AND pid = pg_backend_pid() AND granted) THEN
          RAISE EXCEPTION 'advisory lock 42 is not held by this session';
        END IF;
        RETURN NULL;
      END $$;
      CREATE TRIGGER sessions_locked BEFORE DELETE ON sessions FOR EACH STATEMENT EXECUTE FUNCTION require_lock();`);
    const { NightlyCleanup } = await import('./examples/outside-request.js');
    // maxUses: 1 gives every checkout a new connection, so only a scope keeps the queries on one.
    const app = await (
      await Test.createTestingModule({ imports: [PoolModule.forRoot({ ...db.options, maxUses: 1 })], providers: [NightlyCleanup] }).compile()
    ).init();
    const other = new pg.Client(db.options);
    try {
      await other.connect();
      await other.query('SELECT pg_advisory_lock(42)');
      expect(await app.get(NightlyCleanup).run()).toBe(0); // another instance holds the lock
      await other.query('SELECT pg_advisory_unlock(42)');
      expect(await app.get(NightlyCleanup).run()).toBe(2);
      const { rows } = await db.query<{ held: string }>("SELECT count(*) AS held FROM pg_locks WHERE locktype = 'advisory'");
      expect(rows[0].held).toBe('0');
    } finally {
      await other.end();
      await app.close();
      await db.drop();
    }
  });

  // After the test above, which sets DATABASE_URL before basic.ts reads it at import.
  it.each(exampleModules)('loads %s (decorators, metadata and imports run)', async (name) => {
    await expect(import(`./examples/${name.replace(/\.ts$/, '.js')}`)).resolves.toBeDefined();
  });
});
