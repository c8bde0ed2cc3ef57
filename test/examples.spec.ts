import { readFileSync } from 'node:fs';
import { Test } from '@nestjs/testing';
import { createTestDatabase } from './support/database.js';

const root = new URL('../', import.meta.url);
const readme = readFileSync(new URL('README.md', root), 'utf8');

describe('README', () => {
  const examples = [...readme.matchAll(/<!-- example: (\S+) -->\n```ts\n([\s\S]*?)\n```/g)];

  it('shows every example file as it is (the files are type-checked by npm test)', () => {
    expect(examples.length).toBeGreaterThanOrEqual(4);
    for (const [, path, code] of examples) {
      expect(code).toBe(readFileSync(new URL(path, root), 'utf8').trimEnd());
    }
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
});
