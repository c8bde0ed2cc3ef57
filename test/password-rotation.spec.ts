import { Controller, Get, type INestApplication } from '@nestjs/common';
import { ExpressAdapter } from '@nestjs/platform-express';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import pg, { type Pool } from 'pg';
import { getPoolToken, InjectConnection, PoolConnection, PoolModule, PoolStatsService, type PoolModuleOptions } from '../lib/index.js';
import { Load, type Outcome } from './faults/support/load.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { PgCluster } from './support/pg-cluster.js';
import { RotatingPassword } from './support/rotating-password.js';

// A rotating credential (an IAM token, a Vault lease) as a `password`
// function, under load, against a server that checks scram-sha-256
// passwords: the module hands the function to node-postgres untouched;
// connections opened before a rotation keep serving, new ones use the new
// password; a wrong password is one log line when it starts failing and one
// when it works again, 503s meanwhile, and no password in any log line.

const ROLE = `npp_rotation_${randomBytes(4).toString('hex')}`;
const OLD = `Old-${randomBytes(8).toString('hex')}`;
const NEW = `New-${randomBytes(8).toString('hex')}`;
const WRONG = `Wrong-${randomBytes(8).toString('hex')}`;

@Controller()
class PidController {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  @Get('pid/:n')
  async pid(): Promise<number> {
    return (await this.connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid;
  }
}

let cluster: PgCluster;
let app: INestApplication;
let load: Load;
const logger = new CapturingLogger();
const password = new RotatingPassword(OLD);

/** The role's connection settings on the cluster, with `password` as given. */
function asRole(secret: PoolModuleOptions['password']): PoolModuleOptions {
  const { host, port, database, ssl } = cluster.options();
  return { host, port, database, ssl, user: ROLE, password: secret };
}

/** Whether the server takes `secret` for the role now. */
async function accepts(secret: string): Promise<boolean> {
  const client = new pg.Client(asRole(secret));
  try {
    await client.connect();
    await client.end();
    return true;
  } catch (error) {
    expect(error).toMatchObject({ code: '28P01' });
    return false;
  }
}

beforeAll(async () => {
  cluster = await PgCluster.create({ production: true });
  await cluster.query('postgres', `CREATE ROLE ${ROLE} LOGIN PASSWORD '${OLD}'`);
  const moduleRef = await Test.createTestingModule({
    imports: [
      // Connections live 0.3 s, so that new ones are opened all the time under load.
      PoolModule.forRoot({ ...asRole(password.get), max: 4, maxLifetimeSeconds: 0.3, connectionTimeoutMillis: 5000 }),
    ],
    controllers: [PidController],
  }).compile();
  app = moduleRef.createNestApplication(new ExpressAdapter(), { logger });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  load = new Load(port, (n) => `/pid/${n}`, { workers: 8, boundMillis: 10_000, paceMillis: 2, keepAlive: true }).start();
});

afterAll(async () => {
  await load?.stop();
  await app?.close();
  await cluster?.destroy();
});

/** Connections the pool has opened so far. */
function created(): number {
  return app.get(PoolStatsService).get().created;
}

it('is handed to node-postgres as given, for it to call at each new connection', () => {
  expect(app.get<Pool>(getPoolToken()).options.password).toBe(password.get);
  expect(password.calls).toBeGreaterThanOrEqual(created());
});

/** Outcomes from index `since` on that are not a 200, told apart from one another. */
function notOk(since: number): Outcome[] {
  return load.outcomes.slice(since).filter((o) => o.kind !== '200');
}

/** The 503s must all carry Retry-After, and come only from requests under way between `from` and `to` (Date.now() times). */
function expectRefusedOnlyBetween(outcomes: readonly Outcome[], from: number, to: number): void {
  expect(outcomes.filter((o) => o.status !== 503 || o.retryAfter !== '1')).toEqual([]);
  expect(outcomes.filter((o) => o.startedAt + o.millis < from || o.startedAt > to)).toEqual([]);
}

it('rotates under load: a connection opened before keeps serving, new ones use the new password', async () => {
  await load.until(() => load.count((o) => o.kind === '200') >= 50, '50 answers before the rotation');
  expect(notOk(0)).toEqual([]);
  const since = load.outcomes.length;
  const logSince = logger.messages.length;
  const old = await app.get<Pool>(getPoolToken()).connect();
  const alterAt = Date.now();
  let switchedAt: number;
  try {
    await cluster.query('postgres', `ALTER ROLE ${ROLE} PASSWORD '${NEW}'`);
    password.set(NEW);
    switchedAt = Date.now();
    await expect(old.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
  } finally {
    old.release();
  }
  const createdAtRotation = created();
  const afterSwitch = load.outcomes.length;
  await load.until(
    () => load.count((o) => o.kind === '200', afterSwitch) >= 100 && created() >= createdAtRotation + 8,
    '100 answers on 8 new connections',
  );
  expect(await accepts(OLD)).toBe(false);
  expect(await accepts(NEW)).toBe(true);
  // The server checks a login against the password it read as the login began: a login under way
  // at the switch may fail (a quiet 503, and the pair of log lines), none after it.
  const refused = notOk(since);
  expectRefusedOnlyBetween(refused, alterAt, switchedAt);
  const logged = logger.messages.slice(logSince);
  expect(logged).toEqual(refused.length ? [expect.stringMatching(/fails authentication/), expect.stringMatching(/serves again/)] : []);
  process.stdout.write(`[rotation] ${load.outcomes.length - since} answers, ${refused.length} refused at the switch, ${created() - createdAtRotation} connections opened with the new password\n`);
});

it('a wrong password: 503s, one log line as it starts failing and one as it works again', async () => {
  const since = logger.messages.length;
  const outcomesBefore = load.outcomes.length;
  const wrongAt = Date.now();
  password.set(WRONG);
  const failing = await logger.next(/fails authentication/, since);
  await load.until(() => load.count((o) => o.status === 503, outcomesBefore) >= 5, '503s while the password is wrong');
  const rightAt = Date.now();
  password.set(NEW);
  await logger.next(/serves again/, since);
  const afterRecovery = load.outcomes.length;
  await load.until(() => load.count((o) => o.kind === '200', afterRecovery) >= 50, '50 answers after the recovery');

  expect(logger.messages.slice(since)).toEqual([failing, expect.stringMatching(/serves again/)]);
  expect(failing).toMatch(
    new RegExp(
      `^Datasource "default": fails authentication; connections are refused with 503 until its credentials are accepted: ` +
        `Cannot connect datasource "default" to ${ROLE}@127\\.0\\.0\\.1:${cluster.port}/postgres after 1 attempt\\(s\\): ` +
        `authentication failed: password authentication failed for user "${ROLE}"`,
    ),
  );
  expect(logger.messages.slice(since)[1]).toMatch(
    /^Datasource "default": serves again after \d+ ms failing authentication; \d+ connection request\(s\) were refused meanwhile$/,
  );
  // Every answer 200 or 503 with Retry-After, and the 503s only from requests under way while the password was wrong.
  const refused = notOk(outcomesBefore);
  expectRefusedOnlyBetween(refused, wrongAt, rightAt);
  process.stdout.write(`[wrong password] ${load.outcomes.length - outcomesBefore} answers, ${refused.length} refused with 503\n`);
});

it('never shows a password in the log', () => {
  const everything = logger.messages.join('\n');
  for (const secret of [OLD, NEW, WRONG]) expect(everything).not.toContain(secret);
});
