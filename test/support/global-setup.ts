import { EmbeddedPostgres } from '../../sample-app/databases/embedded-postgres.ts';
import { accepts, probeNeeds } from './services.ts';

// Jest's globalSetup and globalTeardown run in its parent process, before
// and after every suite; the workers it starts in between inherit the
// environment set here. Jest resolves no module mapping for them, hence the
// imports by file name.

declare global {
  // The server global-setup.ts started, for global-teardown.ts to stop.
  var nppEmbeddedPostgres: EmbeddedPostgres | undefined;
}

export default async function globalSetup(): Promise<void> {
  await provideServer();
  await probeNeeds();
}

/**
 * The PostgreSQL the suites run against: DATABASE_URL when set, else the
 * server of the PG* variables (default 127.0.0.1:5432) when it answers, else
 * an embedded one of the run's own, with a password (scram-sha-256), whose
 * settings go to the workers as PG* variables. TEST_POSTGRES_PACKAGE (the
 * entry file of an `embedded-postgres` binary package of another major, as
 * `.ci/pg-major.sh` prints it) makes the embedded server the one under test
 * whatever else answers: CI's PostgreSQL matrix.
 */
async function provideServer(): Promise<void> {
  const packageName = process.env.TEST_POSTGRES_PACKAGE;
  let why = `TEST_POSTGRES_PACKAGE=${packageName}`;
  if (!packageName) {
    if (process.env.DATABASE_URL) return;
    const host = process.env.PGHOST ?? '127.0.0.1';
    const port = Number(process.env.PGPORT ?? 5432);
    if (host.startsWith('/') || (await accepts({ host, port }))) return;
    why = `no DATABASE_URL and no PostgreSQL on ${host}:${port}`;
  }
  const server = await EmbeddedPostgres.start(packageName);
  globalThis.nppEmbeddedPostgres = server;
  delete process.env.DATABASE_URL;
  Object.assign(process.env, {
    PGHOST: server.host,
    PGPORT: String(server.port),
    PGUSER: server.user,
    PGPASSWORD: server.password,
    PGDATABASE: 'postgres',
  });
  process.stdout.write(`\n[postgres] ${why}: the suites run against an embedded PostgreSQL ${server.version} on ${server.host}:${server.port} (scram-sha-256)\n`);
}
