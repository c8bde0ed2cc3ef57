import type { INestApplication } from '@nestjs/common';
import { ACCOUNTS, OPENING_BALANCE, openBank, outstanding, startBank } from './support/bank.js';
import { CapturingLogger } from './support/capturing-logger.js';
import { waitFor } from './support/database.js';
import { failOver, type Demotion, type FailoverResult } from './support/failover.js';
import { PgCluster } from './support/pg-cluster.js';
import { whenAvailable } from './support/services.js';
import { TransferLoad } from './support/transfer-load.js';

// Failovers under load: an application doing bank transfers, pointed at a
// primary and its streaming standby by one multi-host connection string that
// asks for the read-write one. Each test has a pair of throwaway clusters of
// its own; the shared server on 5432 is not involved.

/** Writes must be back this soon after the new primary takes them (the target). */
const WRITES_BACK_MS = 1000;

interface Pair {
  primary: PgCluster;
  standby: PgCluster;
  app: INestApplication;
  url: string;
  logger: CapturingLogger;
}

/** A primary with the bank, its standby caught up (synchronous when asked), and the bank's application on both. */
async function startPair(synchronous: boolean): Promise<Pair> {
  const primary = await PgCluster.create();
  const standby = await PgCluster.replicaOf(primary).catch(async (error: unknown) => {
    await primary.destroy();
    throw error;
  });
  try {
    await openBank(primary.options());
    await primary.synchronousReplication(synchronous);
    await standby.catchUpWith(primary);
    const logger = new CapturingLogger();
    const hosts = [primary, standby].map((cluster) => `${cluster.host}:${cluster.port}`).join(',');
    const connectionString = `postgres://postgres@${hosts}/postgres?target_session_attrs=read-write`;
    const { app, url } = await startBank({ connectionString, max: 8, connectionTimeoutMillis: 2000 }, logger);
    return { primary, standby, app, url, logger };
  } catch (error) {
    await standby.destroy();
    await primary.destroy();
    throw error;
  }
}

async function stopPair(pair: Pair | undefined): Promise<void> {
  await pair?.app.close();
  await pair?.standby.destroy();
  await pair?.primary.destroy();
}

/** What every failover must keep: no answer but 200 and 503 (with Retry-After), balanced books, writes back in time, nothing held. */
async function expectSafe(pair: Pair, result: FailoverResult): Promise<void> {
  expect(Object.keys(result.overall).filter((status) => status !== '200' && status !== '503')).toEqual([]);
  expect(result.refusalsWithoutRetryAfter).toBe(0);
  expect(result.total).toBe(ACCOUNTS * OPENING_BALANCE);
  expect(result.firstAcknowledgedMs).toBeDefined();
  expect(result.firstAcknowledgedMs).toBeLessThan(WRITES_BACK_MS);
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

  test('a clean switchover (stop -m fast, standby promoted): writes back within 1 s, nothing acknowledged lost, only 200 and 503', async () => {
    const run = await failoverOfNewPair('stop -m fast', false);
    pair = run.pair;
    await expectSafe(pair, run.result);
    expect(run.result.lost).toBe(0);
  }, 60_000);

  test('the primary turned read-only under the application: 25006 evicts, never a 500, writes resume on the promoted standby', async () => {
    const run = await failoverOfNewPair('read-only', false);
    pair = run.pair;
    await expectSafe(pair, run.result);
    expect(run.result.lost).toBe(0);
  }, 60_000);

  test('a crash (stop -m immediate) with synchronous replication: nothing acknowledged is lost', async () => {
    const run = await failoverOfNewPair('stop -m immediate', true);
    pair = run.pair;
    await expectSafe(pair, run.result);
    expect(run.result.lost).toBe(0);
  }, 60_000);

  test('a crash (stop -m immediate) with asynchronous replication: what it loses is reported, the books stay balanced', async () => {
    const run = await failoverOfNewPair('stop -m immediate', false);
    pair = run.pair;
    // Asynchronous replication promises nothing about the last commits; the count is reported, not asserted.
    process.stdout.write(`[failover] stop -m immediate, asynchronous: ${run.result.lost} acknowledged transfer(s) lost of ${run.result.acknowledged}\n`);
    await expectSafe(pair, run.result);
  }, 60_000);
});
