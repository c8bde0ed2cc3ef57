import type { INestApplication } from '@nestjs/common';
import pg from 'pg';
import { audit, openBank, ownTransfers, startBank } from './bank.js';
import { CapturingLogger } from './capturing-logger.js';
import { PgCluster } from './pg-cluster.js';
import type { TransferLoad } from './transfer-load.js';

/** How long a failover may take to show its first committed write before it counts as never. */
const WRITES_BACK_TIMEOUT_MS = 20_000;

/**
 * Watches a standby from a connection of its own and notes the moment it
 * first takes a write: `pg_current_xact_id()` fails during recovery and
 * answers once the promotion is through.
 */
export class WritableProbe {
  /** When the standby first took a write (ms since the epoch). */
  readonly writable: Promise<number>;
  private stopped = false;

  private constructor(private readonly client: pg.Client) {
    this.writable = this.poll();
  }

  static async on(standby: PgCluster): Promise<WritableProbe> {
    const client = new pg.Client(standby.options());
    await client.connect();
    return new WritableProbe(client);
  }

  /** Ends the polling (when no promotion came) and the connection. */
  async end(): Promise<void> {
    this.stopped = true;
    await this.writable.catch(() => undefined);
    await this.client.end();
  }

  private async poll(): Promise<number> {
    while (!this.stopped) {
      const took = await this.client.query('SELECT pg_current_xact_id()').then(
        () => true,
        () => false,
      );
      if (took) return Date.now();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    throw new Error('the probe was ended before the standby took a write');
  }
}

export interface Pair {
  primary: PgCluster;
  standby: PgCluster;
  app: INestApplication;
  url: string;
  logger: CapturingLogger;
}

/** A primary with the bank, its standby caught up (synchronous when asked), and the bank's application on both. */
export async function startPair(synchronous: boolean): Promise<Pair> {
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

export async function stopPair(pair: Pair | undefined): Promise<void> {
  await pair?.app.close();
  await pair?.standby.destroy();
  await pair?.primary.destroy();
}

/** What one failover under transfer load showed. */
export interface FailoverResult {
  /** How the old primary was taken away: `stop -m fast`, a clean switchover; `stop -m immediate`, a crash; `read-only`, left running read-only. */
  demotion: string;
  synchronous: boolean;
  /** From the new primary taking its first write to the application's first commit there (its own clock), ms. */
  firstCommitMs: number | undefined;
  /** From the new primary taking its first write to the HTTP client's first 200 of a transfer it committed, ms. */
  firstAcknowledgedMs: number | undefined;
  /** From the demotion of the old primary to the new one taking writes: the harness' part, ms. */
  promotionMs: number;
  /** Answers by HTTP status between the demotion and the first acknowledged transfer on the new primary. */
  duringSwitch: Record<string, number>;
  /** Answers by HTTP status over the whole run. */
  overall: Record<string, number>;
  /** 503 answers without a Retry-After header. */
  refusalsWithoutRetryAfter: number;
  acknowledged: number;
  /** Acknowledged transfers the new primary does not have. */
  lost: number;
  /** Answers other than 200 whose transfer the new primary has all the same (the connection died as it committed), by status. */
  committedUnacknowledged: Record<string, number>;
  /** Sum of the balances on the new primary (must stay ACCOUNTS × OPENING_BALANCE). */
  total: number;
}

/** Ways of taking the primary away from the application. */
export const DEMOTIONS = {
  'stop -m fast': (primary: PgCluster) => primary.stop('fast'),
  'stop -m immediate': (primary: PgCluster) => primary.stop('immediate'),
  /** The primary left running but read-only, as behind a proxy or DNS name that still points at it; the standby then has all it wrote. */
  'read-only': async (primary: PgCluster, standby: PgCluster) => {
    await primary.setReadOnly(true);
    await primary.writesEnded();
    await standby.catchUpWith(primary);
  },
} satisfies Record<string, (primary: PgCluster, standby: PgCluster) => Promise<void>>;

export type Demotion = keyof typeof DEMOTIONS;

/**
 * Takes `primary` away (`demotion`) while `load` runs against an application
 * that lists both servers, promotes `standby`, waits for the application's
 * first committed write there, lets `after` more transfers through, then
 * stops the load and audits the new primary's books.
 */
export async function failOver(
  load: TransferLoad,
  primary: PgCluster,
  standby: PgCluster,
  demotion: Demotion,
  options: { synchronous: boolean; after?: number },
): Promise<FailoverResult> {
  try {
    await load.acknowledgements(30);
    const probe = await WritableProbe.on(standby);
    const stoppedAt = Date.now();
    let writesBack: Promise<unknown> = Promise.resolve();
    try {
      await DEMOTIONS[demotion](primary, standby);
      // A 200 from now on is most likely the new primary's; which are is told from the books below.
      writesBack = within(load.next((answer) => answer.status === 200), WRITES_BACK_TIMEOUT_MS);
      await standby.promote();
      await probe.writable;
    } finally {
      await probe.end();
    }
    const writableAt = await probe.writable;
    await writesBack;
    await within(load.acknowledgements(options.after ?? 30), WRITES_BACK_TIMEOUT_MS);
    await load.stop();
    const own = await ownTransfers(standby.options(), standby.port, load.run);
    const first = load.answers.find((answer) => answer.status === 200 && own.ids.has(answer.id));
    const books = await audit(standby.options(), load.answers);
    return {
      demotion,
      synchronous: options.synchronous,
      firstCommitMs: own.firstAt === undefined ? undefined : own.firstAt - writableAt,
      firstAcknowledgedMs: first && first.at - writableAt,
      promotionMs: writableAt - stoppedAt,
      duringSwitch: load.countsByStatus(stoppedAt, first ? first.at + 1 : Infinity),
      overall: load.countsByStatus(),
      refusalsWithoutRetryAfter: load.answers.filter((answer) => answer.status === 503 && !answer.retryAfter).length,
      acknowledged: load.acknowledged().length,
      lost: books.missing.length,
      committedUnacknowledged: books.committedUnacknowledged,
      total: books.total,
    };
  } finally {
    // Stopped already when all went well; not so when a step threw, and its clients would run on.
    await load.stop();
  }
}

/** `promise`, or undefined after `ms` if it has not settled by then. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
