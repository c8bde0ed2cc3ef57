import type { INestApplication } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { PoolStatsService } from '../lib/index.js';
import { ACCOUNTS, audit, OPENING_BALANCE, openBank, outstanding, startBank } from './support/bank.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { waitFor } from './support/database.js';
import { failOver, startPair, stopPair, type Demotion, type FailoverResult, type Pair } from './support/failover.js';
import { PgCluster } from './support/pg-cluster.js';
import { RotatingPassword } from './support/rotating-password.js';
import { whenAvailable } from './support/services.js';
import { TransferLoad } from './support/transfer-load.js';

// Failovers under load: an application doing bank transfers, pointed at a
// primary and its streaming standby by one multi-host connection string that
// asks for the read-write one. Each test has a pair of throwaway clusters of
// its own; the shared server on 5432 is not involved.

/** Writes must be back this soon after the new primary takes them (the target). */
const WRITES_BACK_MS = 1000;

/**
 * What every failover must keep: no answer but 200 and 503 (with Retry-After),
 * balanced books, writes back in time, one log line for it, every connection
 * on the new primary, nothing held; `lost` acknowledged transfers missing
 * (undefined: not asserted). One comparison, so that a failure shows every figure.
 */
async function expectSafe(pair: Pair, result: FailoverResult, lost: number | undefined): Promise<void> {
  const otherStatuses = Object.fromEntries(Object.entries(result.overall).filter(([status]) => status !== '200' && status !== '503'));
  expect({
    otherStatuses,
    refusalsWithoutRetryAfter: result.refusalsWithoutRetryAfter,
    total: result.total,
    writesBackInTime: result.firstAcknowledgedMs !== undefined && result.firstAcknowledgedMs < WRITES_BACK_MS,
    lost: lost === undefined ? undefined : result.lost,
    failoverLogLines: pair.logger.messages.filter((message) => /writes were unavailable for \d+ ms/.test(message)).length,
    hosts: Object.keys(pair.app.get(PoolStatsService).get().connectionsByHost ?? {}),
  }).toEqual({
    otherStatuses: {},
    refusalsWithoutRetryAfter: 0,
    total: ACCOUNTS * OPENING_BALANCE,
    writesBackInTime: true,
    lost,
    failoverLogLines: 1,
    hosts: [`${pair.standby.host}:${pair.standby.port}`],
  });
  await waitFor(async () => {
    const { leased, inUse } = outstanding(pair.app);
    return leased === 0 && inUse === 0 ? true : undefined;
  }, 'every connection to be back in the pool');
}

/** One failover of a new pair under 16 clients. */
async function failoverOfNewPair(demotion: Demotion, synchronous: boolean): Promise<{ pair: Pair; result: FailoverResult }> {
  const pair = await startPair(synchronous);
  try {
    const load = TransferLoad.start(pair.url);
    const result = await failOver(load, pair.primary, pair.standby, demotion, { synchronous });
    process.stdout.write(`[failover] ${demotion}${synchronous ? ', synchronous' : ''}: ${JSON.stringify(result)}\n`);
    return { pair, result };
  } catch (error) {
    await stopPair(pair);
    throw error;
  }
}

describe('failover under transfer load (own primary and streaming standby)', () => {
  const test = whenAvailable('pg_basebackup', 'failover');
  let pair: Pair | undefined;
  afterEach(async () => {
    await stopPair(pair);
    pair = undefined;
  });

  test.each<[string, Demotion, boolean]>([
    ['a clean switchover (stop -m fast, standby promoted)', 'stop -m fast', false],
    ['the primary turned read-only under the application (25006 evicts)', 'read-only', false],
    ['a crash (stop -m immediate) with synchronous replication', 'stop -m immediate', true],
  ])('%s: writes back within 1 s, nothing acknowledged lost, only 200 and 503', async (_what, demotion, synchronous) => {
    const run = await failoverOfNewPair(demotion, synchronous);
    pair = run.pair;
    await expectSafe(pair, run.result, 0);
  }, 60_000);

  test('a crash (stop -m immediate) with asynchronous replication: what it loses is reported, the books stay balanced', async () => {
    const run = await failoverOfNewPair('stop -m immediate', false);
    pair = run.pair;
    // Asynchronous replication promises nothing about the last commits; the count is reported, not asserted.
    process.stdout.write(`[failover] stop -m immediate, asynchronous: ${run.result.lost} acknowledged transfer(s) lost of ${run.result.acknowledged}\n`);
    await expectSafe(pair, run.result, undefined);
  }, 60_000);
});

describe('the edges of a failover under transfer load', () => {
  const test = whenAvailable('pg_basebackup', 'failover');
  const clusters: PgCluster[] = [];
  let app: INestApplication | undefined;
  let load: TransferLoad | undefined;
  afterEach(async () => {
    await load?.stop();
    load = undefined;
    await app?.close();
    app = undefined;
    for (const cluster of clusters.splice(0)) await cluster.destroy();
  });

  test('both servers down at boot, then up: the application boots, answers 503 with Retry-After, then 200 on the primary', async () => {
    const primary = await PgCluster.create();
    clusters.push(primary);
    await openBank(primary.options());
    const standby = await PgCluster.replicaOf(primary);
    clusters.push(standby);
    await standby.catchUpWith(primary);
    await standby.stop('fast');
    await primary.stop('fast');
    const logger = new CapturingLogger();
    const hosts = [primary, standby].map((cluster) => `${cluster.host}:${cluster.port}`).join(',');
    const bank = await startBank(
      { connectionString: `postgres://postgres@${hosts}/postgres?target_session_attrs=read-write`, max: 8, retryAttempts: 0, retryDelay: 100, bootWithoutDatabase: true },
      logger,
    );
    app = bank.app;
    load = TransferLoad.start(bank.url);
    for (let refused = 0; refused < 20; refused++) await load.next((answer) => answer.status === 503);
    await primary.start();
    await standby.start();
    await load.acknowledgements(30);
    await load.stop();
    const { total, missing } = await audit(primary.options(), load.answers);
    expect({
      statuses: Object.keys(load.countsByStatus()).sort(),
      withoutRetryAfter: load.answers.filter((answer) => answer.status === 503 && !answer.retryAfter).length,
      books: { total, missing },
      unreachableLines: logger.matching(/is unreachable/).length,
      servingLines: logger.matching(/serves again/).length,
    }).toEqual({ statuses: ['200', '503'], withoutRetryAfter: 0, books: { total: ACCOUNTS * OPENING_BALANCE, missing: [] }, unreachableLines: 1, servingLines: 1 });
  }, 60_000);

  test('a password rotated under load: open connections keep working, new ones use the new password, only 200 and 503, no password in the log', async () => {
    const cluster = await PgCluster.create({ production: true });
    clusters.push(cluster);
    await openBank(cluster.options());
    const role = `bank_${randomBytes(3).toString('hex')}`;
    const [first, second] = [randomBytes(9).toString('hex'), randomBytes(9).toString('hex')];
    await cluster.query('postgres', `CREATE ROLE ${role} LOGIN PASSWORD '${first}'; GRANT ALL ON accounts, transfers TO ${role}`);
    const password = new RotatingPassword(first);
    const logger = new CapturingLogger();
    // Connections live about a second, so that new ones open while the load runs.
    const bank = await startBank({ ...cluster.options(), user: role, password: password.get, max: 4, maxLifetimeSeconds: 1 }, logger);
    app = bank.app;
    load = TransferLoad.start(bank.url, 8);
    await load.acknowledgements(20);
    // A connection opened between the two steps offers the old password to the new role: a 503, not a 500.
    const rotatedAt = new Date();
    await cluster.query('postgres', `ALTER ROLE ${role} PASSWORD '${second}'`);
    password.set(second);
    await waitFor(async () => {
      const { rows } = await cluster.query('postgres', 'SELECT 1 FROM pg_stat_activity WHERE usename = $1 AND backend_start > $2', [role, rotatedAt]);
      return rows.length > 0 ? true : undefined;
    }, 'a connection opened with the new password');
    await load.acknowledgements(20);
    await load.stop();
    const { total, missing } = await audit(cluster.options(), load.answers);
    const otherStatuses = Object.keys(load.countsByStatus()).filter((status) => status !== '200' && status !== '503');
    expect({ otherStatuses, books: { total, missing } }).toEqual({ otherStatuses: [], books: { total: ACCOUNTS * OPENING_BALANCE, missing: [] } });
    expect([...logger.messages, ...logger.errors].join('\n')).not.toMatch(new RegExp(`${first}|${second}`));
  }, 60_000);
});
