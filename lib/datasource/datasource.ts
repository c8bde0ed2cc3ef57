import type { Logger } from '@nestjs/common';
import pg, { type QueryResult, type QueryResultRow } from 'pg';
import { ConnectionLease, leaseOf, watchLeasedClient, withCallerStack, type LeasePolicy } from '../connection/connection-lease.js';
import type { LeaseRecipient, LeaseSource } from '../connection/lease-source.js';
import type { QueryInput } from '../connection/query-input.js';
import type { ScopeHolder } from '../connection/scope-holder.js';
import type { PoolModuleOptions } from '../interfaces/pool-module-options.interface.js';
import {
  DEFAULT_ACQUIRE_TIMEOUT_MS,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_LIFETIME_JITTER,
  DEFAULT_RETRY_ATTEMPTS,
  DEFAULT_RETRY_DELAY_MS,
} from '../pool.constants.js';
import {
  AuthenticationFailedError,
  DatabaseUnreachableError,
  InvalidPoolOptionsError,
  PoolClosedError,
  PoolError,
  PoolExhaustedError,
  PoolQueueFullError,
  PoolUnavailableError,
  type PoolCounts,
} from '../pool.errors.js';
import { delay, settlesWithin } from '../pool.utils.js';
import { transactionPoolingRefusal } from '../pooler/transaction-pooling.js';
import { mayHaveWritten } from '../replication/read-routing.js';
import { AvailabilityLog } from './availability-log.js';
import { connectMillis, timedClientClass } from './connect-time.js';
import { connectionTarget, describeTarget, redactSecrets } from './describe-target.js';
import { readHostChoice, type HostChoice } from './host-list.js';
import { HostTargeting, targetedClientClass } from './host-targeting.js';
import { PoolStatsRecorder } from './pool-stats.js';
import { StartupRetries } from './startup-retries.js';
import { WaitingList } from './waiting-list.js';

// Node fires a timer up to 1 ms before its delay has passed as
// performance.now() measures it (the event loop's clock counts whole ms).
const TIMER_SLACK_MS = 1;

// The startup check: proves a connection works and reads the server's budget.
export const CONNECTION_BUDGET_QUERY =
  "SELECT current_setting('max_connections')::int - current_setting('superuser_reserved_connections')::int AS available";

// SQLSTATEs of a server that refused the credentials: invalid_password, invalid_authorization_specification.
const AUTHENTICATION_FAILURES = new Set(['28P01', '28000']);

/**
 * One named datasource: its `pg.Pool` and the module's bookkeeping of the
 * clients it lent out, so that shutdown can wait for them and nothing leaks.
 */
export class Datasource implements LeaseSource {
  readonly pool: pg.Pool;
  readonly holdsPerQuery: boolean;
  readonly refusesAfterHangUp: boolean;
  readonly deadlineMillis: number;
  /** What its leases need of it (see LeasePolicy), composed once from the options. */
  private readonly leasePolicy: LeasePolicy;
  /** `user@host:port/database`, safe for logs. */
  readonly target: string;
  readonly stats: PoolStatsRecorder;
  /** Its open connections, which know their leases (see leaseOf()): shutdown finds the leases still out there. */
  private readonly connections = new Set<pg.PoolClient>();
  private readonly max: number;
  /** The class the pool makes its clients of (see clientOutsidePool()). */
  private readonly clientClass: typeof pg.Client;
  /** Which host each new connection goes to; undefined for one host and `targetSessionAttrs` 'any', where pg alone decides. */
  private readonly targeting: HostTargeting | undefined;
  /** When each connection must be retired; see `maxLifetimeJitter`. */
  private readonly retireAt = new WeakMap<pg.PoolClient, number>();
  private closing: Promise<void> | undefined;
  /** The acquisitions waiting for a client, refused at once when the datasource closes. */
  private readonly waiting = new WaitingList<LeaseRecipient>();
  private readonly availability = new AvailabilityLog(
    (message) => this.logger.error(this.prefixed(message)),
    (message) => this.logger.warn(this.prefixed(message)),
  );
  /** The startup check, retried in the background after a boot without the database; see `bootWithoutDatabase`. */
  private startupRetries: StartupRetries | undefined = undefined;

  constructor(
    readonly name: string,
    readonly options: PoolModuleOptions,
    private readonly logger: Logger,
    /** The datasource whose replica this pool is, if it is one. */
    replicaOf?: string,
  ) {
    const {
      name: _name,
      retryAttempts: _retryAttempts,
      retryDelay: _retryDelay,
      bootWithoutDatabase: _bootWithout,
      drainTimeoutMillis: _drainTimeout,
      maxWaitingClients: _maxWaiting,
      leakDetectionThreshold: _leakThreshold,
      resetOnRelease: _reset,
      maxLifetimeSeconds: _lifetime,
      maxLifetimeJitter: _jitter,
      transactionPooling: _transactionPooling,
      queriesAfterHangUp: _afterHangUp,
      clientHold: _clientHold,
      requestDeadlineMillis: _deadline,
      replicas: _replicas,
      replicaRetryMillis: _replicaRetry,
      targetSessionAttrs: _target,
      loadBalanceHosts: _loadBalance,
      ...givenConfig
    } = options;
    const choice = hostChoiceOf(name, options, givenConfig);
    const poolConfig = choice.poolConfig;
    // pg's typings give the option a narrower class than pg.Client, which the pool is made with by default.
    const baseClient = (poolConfig.Client as typeof pg.Client | undefined) ?? pg.Client;
    this.targeting = this.hostTargeting(choice, baseClient);
    this.clientClass = timedClientClass(this.targeting ? targetedClientClass(baseClient, this.targeting) : baseClient);
    this.pool = new pg.Pool({
      keepAlive: true,
      connectionTimeoutMillis: DEFAULT_ACQUIRE_TIMEOUT_MS,
      ...poolConfig,
      Client: this.clientClass as unknown as pg.PoolConfig['Client'],
    });
    this.max = this.pool.options.max;
    this.holdsPerQuery = options.clientHold === 'query';
    this.refusesAfterHangUp = options.queriesAfterHangUp === 'refuse';
    this.deadlineMillis = options.requestDeadlineMillis ?? 0;
    this.leasePolicy = {
      name,
      leakDetectionThreshold: options.leakDetectionThreshold ?? 0,
      resetOnRelease: options.resetOnRelease,
      refuseStatement: options.transactionPooling ? (input) => transactionPoolingRefusal(name, input) : undefined,
      settingsPerTransaction: options.transactionPooling === true,
      // A request that wrote reads its own writes: only a datasource with replicas need know.
      mayHaveWritten: options.replicas?.length ? mayHaveWritten : undefined,
      isExpired: (client) => this.isExpired(client),
      hostLost: this.targeting ? (client, error) => this.targeting?.hostLost(client, error) : undefined,
      released: (lease) => this.leaseReleased(lease),
      warn: (message) => this.warn(message),
    };
    this.target = describeTarget(options);
    this.stats = new PoolStatsRecorder(name, this.pool, replicaOf, this.targeting !== undefined);
    // Idle clients whose connection dies emit 'error' on the pool, which
    // removes them; without a listener the process would crash.
    this.pool.on('error', (error, client) =>
      this.warn(`an idle connection${this.targeting ? ` to ${client.host}:${client.port}` : ''} failed (${error.message}) and was removed`),
    );
    // Once per connection rather than on every checkout: see watchLeasedClient().
    this.pool.on('connect', watchLeasedClient);
    this.pool.on('remove', (client) => this.connections.delete(client));
    this.pool.on('connect', (client) => {
      this.connections.add(client);
      this.availability.connected(performance.now() - (connectMillis(client) ?? 0));
      // The server answers: a startup check still retried in the background need not wait for its timer
      // (once pg-pool has handed this client out, rather than from inside its event).
      if (this.startupRetries) queueMicrotask(() => this.startupRetries?.wake());
    });
    if (options.maxLifetimeSeconds) {
      this.pool.on('connect', (client) => this.retireAt.set(client, Date.now() + this.lifetimeMillis()));
    }
  }

  /** Number of clients lent out by this module and not yet released. */
  get leasedCount(): number {
    return this.stats.lentOut;
  }

  counts(): PoolCounts {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount, max: this.max };
  }

  /** True when an acquisition would queue behind the others: no idle client and no room for another. */
  get saturated(): boolean {
    return this.mustWait();
  }

  /**
   * A client of the pool's own class and options (its host targeting
   * included) that the pool knows nothing of: the caller connects and ends
   * it. For a health ping that must not queue behind the requests it reports
   * on; refused, as acquisitions are, once the datasource closes.
   */
  clientOutsidePool(): pg.Client {
    if (this.closing) throw new PoolClosedError(this.name);
    return new this.clientClass(this.pool.options);
  }

  /** Checks out a client; `holder` names the borrower in leak warnings. */
  acquire(holder?: ScopeHolder): Promise<ConnectionLease> {
    return new Promise((resolve, reject) => this.lend(holder, { received: resolve, refused: reject }));
  }

  /**
   * Checks out a client for `recipient` (a connection scope's slot), told
   * the outcome from pg-pool's callback: no promise in between.
   */
  lend(holder: ScopeHolder | undefined, recipient: LeaseRecipient): void {
    const refusal = this.whyRefused();
    if (refusal) {
      if (refusal instanceof PoolQueueFullError) this.availability.refused(refusal);
      return recipient.refused(refusal);
    }
    // Made before pg-pool is asked, while the borrower's frames are still on the stack.
    const askedAt = this.options.leakDetectionThreshold ? new Error('acquired here') : undefined;
    this.checkOut(performance.now(), holder, askedAt, recipient);
  }

  /** Borrows a client for `fn` alone, like `pool.query` does for one query. */
  async withLease<T>(fn: (lease: ConnectionLease) => Promise<T>): Promise<T> {
    const lease = await this.acquire();
    try {
      return await fn(lease);
    } finally {
      lease.release();
    }
  }

  /** One query on a client borrowed for it alone, like `pool.query` (and with as many promises). */
  query<R extends QueryResultRow>(input: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>> {
    return withCallerStack(
      new Promise<QueryResult<R>>((resolve, reject) =>
        this.lend(undefined, {
          received: (lease) => lease.send<R>(input, values, true, (error, result) => (error ? reject(error) : resolve(result!))),
          refused: reject,
        }),
      ),
    );
  }

  /** A lease's client is back in the pool (or closed). */
  private leaseReleased(lease: ConnectionLease): void {
    this.stats.recordReleased(performance.now() - lease.acquiredAt);
  }

  /** True when `client` outlived its lifetime, or its host was evicted: it must be closed, not reused. */
  isExpired(client: pg.PoolClient): boolean {
    if (this.targeting?.isEvicted(client)) return true;
    // Only connections with a maximum lifetime have a retirement date.
    if (!this.options.maxLifetimeSeconds) return false;
    const retireAt = this.retireAt.get(client);
    return retireAt !== undefined && Date.now() >= retireAt;
  }

  /**
   * A first query at startup, retried `retryAttempts` times `retryDelay` ms apart;
   * then opens the `min` connections the pool keeps warm. Every wait in it is
   * bounded (see startupBound()), so a boot always ends: started or failed.
   * With `bootWithoutDatabase`, a check that still fails lets the boot go
   * on and is retried in the background (see StartupRetries).
   */
  async checkConnection(): Promise<void> {
    const retries = this.options.retryAttempts ?? DEFAULT_RETRY_ATTEMPTS;
    const retryDelay = this.options.retryDelay ?? DEFAULT_RETRY_DELAY_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        this.checkBudget(await this.startupQuery());
        break;
      } catch (error) {
        const reason = this.reasonOf(error);
        if (attempt > retries) {
          const refusal = this.connectError(reason, error, attempt);
          if (!this.options.bootWithoutDatabase) throw refusal;
          this.availability.startedWithout(refusal);
          this.startupRetries = new StartupRetries(() => this.retryStartup(), retryDelay);
          return;
        }
        this.warn(`cannot connect to ${this.target} (${reason}); retrying (${attempt}/${retries}) in ${retryDelay} ms`);
        await delay(retryDelay);
      }
    }
    await this.warmUp();
  }

  /**
   * One background attempt of the startup check: true once the server
   * answered, said so in the log and the check's other duties ran. A failure
   * is logged only where it changes what is wrong (unreachable, failing
   * authentication), as for acquisitions.
   */
  private async retryStartup(): Promise<boolean> {
    const startedAt = performance.now();
    let available: number;
    try {
      available = await this.startupQuery();
    } catch (error) {
      if (this.closing) return false;
      this.availability.failed(this.connectError(this.reasonOf(error), error), startedAt);
      return false;
    }
    this.startupRetries = undefined;
    this.availability.served(this.pool.waitingCount);
    this.checkBudget(available);
    if (!this.closing) await this.warmUp();
    return true;
  }

  /**
   * Stops lending, waits up to `drainTimeoutMillis` for lent clients to come
   * back, closes the connections of those that did not, then ends the pool.
   * The timeout counts from `since` (a `performance.now()` time): the start
   * of a shutdown that first let the requests in flight finish.
   */
  close(since = performance.now()): Promise<void> {
    this.closing ??= this.drainAndEnd(since);
    return this.closing;
  }

  warn(message: string): void {
    this.logger.warn(this.prefixed(message));
  }

  debug(message: string): void {
    this.logger.debug(this.prefixed(message));
  }

  private prefixed(message: string): string {
    return `Datasource "${this.name}": ${this.redact(message)}`;
  }

  /**
   * Each instance's `max` adds up on the server: warn when this pool alone may
   * ask for more than the server accepts. Behind a transaction-mode pooler the
   * pooler's own limits apply instead.
   */
  private checkBudget(available: number): void {
    if (this.options.transactionPooling || this.max <= available) return;
    this.warn(
      `max (${this.max}) exceeds the ${available} connections the server accepts ` +
        '(max_connections minus superuser_reserved_connections); keep max × instances within it',
    );
  }

  /**
   * How long one startup step (a connection, the check's query) may take:
   * `connectionTimeoutMillis`, or the module's default where it is 0 (wait
   * for ever), which a boot must not do.
   */
  private startupBound(): number {
    return this.pool.options.connectionTimeoutMillis || DEFAULT_ACQUIRE_TIMEOUT_MS;
  }

  /**
   * The startup check's query on a client of its own, within startupBound()
   * for the connection and again for the answer: a server that takes the
   * connection and then says nothing (a pooler waiting for a database it
   * cannot reach) fails the attempt instead of holding the boot. A client
   * whose query failed or was given up on is closed, not kept.
   */
  private async startupQuery(): Promise<number> {
    const bound = this.startupBound();
    const client = await this.connectWithin(bound);
    const query = client.query<{ available: number }>(CONNECTION_BUDGET_QUERY);
    if (!(await settlesWithin(query, bound))) {
      const silence = new PoolError(`no answer within ${bound} ms`);
      client.release(silence);
      throw silence;
    }
    try {
      const { rows } = await query;
      client.release();
      return rows[0].available;
    } catch (error) {
      client.release(error instanceof Error ? error : true);
      throw error;
    }
  }

  /**
   * `pool.connect()` within `bound` ms: pg-pool bounds it itself when
   * `connectionTimeoutMillis` is set; otherwise a client that comes after the
   * bound is closed at once, as nobody waits for it any more.
   */
  private connectWithin(bound: number): Promise<pg.PoolClient> {
    if (this.pool.options.connectionTimeoutMillis) return this.pool.connect();
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined = setTimeout(() => {
        timer = undefined;
        reject(new PoolError(`no connection within ${bound} ms`));
      }, bound);
      this.pool.connect((error, client) => {
        if (timer === undefined) return client?.release(true);
        clearTimeout(timer);
        if (error || !client) reject(error ?? new PoolError('no client'));
        else resolve(client);
      });
    });
  }

  /**
   * Opens the `min` connections the pool keeps. Falling short does not fail
   * the boot: the check has just shown that the server answers with these
   * credentials, and a full `min` is a matter of capacity (the role's or the
   * server's connection limit, still held by the instance being replaced),
   * as HikariCP fills `minimumIdle` after it starts. So the pool starts with
   * what it opened, says so once, and opens more as requests need them.
   * Every client opened here goes back, whatever became of the others.
   */
  private async warmUp(): Promise<void> {
    const min = this.options.min ?? 0;
    if (min <= 0) return;
    const bound = this.startupBound();
    const attempts = await Promise.allSettled(Array.from({ length: min }, () => this.connectWithin(bound)));
    let opened = 0;
    let failure: unknown = undefined;
    for (const attempt of attempts) {
      if (attempt.status === 'fulfilled') {
        attempt.value.release();
        opened++;
      } else {
        failure ??= attempt.reason;
      }
    }
    if (opened < min) {
      this.warn(
        `opened ${opened} of its min ${min} connections at startup (${this.reasonOf(failure)}); ` +
          'it starts with those and opens more as requests need them',
      );
    }
  }

  /** Why an acquire fails at once, if it does: the datasource is closing, or too many already wait. */
  private whyRefused(): PoolError | undefined {
    if (this.closing) return new PoolClosedError(this.name);
    const maxWaiting = this.options.maxWaitingClients;
    if (maxWaiting !== undefined && this.mustWait() && this.pool.waitingCount >= maxWaiting) {
      return new PoolQueueFullError(this.name, this.counts());
    }
    return undefined;
  }

  /**
   * `pool.connect()` and the lease made of its client. Closing the datasource
   * refuses it at once: pg-pool's end() leaves its queue waiting until each
   * acquire times out, which would hold the shutdown past the drain timeout.
   * An expired connection is retired here rather than handed out, and another asked for.
   */
  private checkOut(waitStarted: number, holder: ScopeHolder | undefined, askedAt: Error | undefined, recipient: LeaseRecipient): void {
    const waiting = this.waiting.add(recipient);
    this.pool.connect((error, client) => {
      // Refused meanwhile (the datasource closed): nobody takes this client, pg-pool closes it.
      if (!this.waiting.delete(waiting)) return client?.release();
      if (error || !client) return recipient.refused(this.acquireError(error, waitStarted));
      if (this.isExpired(client)) {
        client.release(new PoolError('connection retired (maximum lifetime, or its host was evicted)'));
        return this.checkOut(waitStarted, holder, askedAt, recipient);
      }
      const lease = new ConnectionLease(this.leasePolicy, client, holder, askedAt);
      this.stats.recordAcquired(lease.acquiredAt - waitStarted);
      this.availability.served(this.pool.waitingCount);
      recipient.received(lease);
    });
  }

  /**
   * Host targeting for several hosts or a `targetSessionAttrs`; undefined
   * for one host and 'any', so that such a datasource's connections cost
   * nothing more than pg's.
   */
  private hostTargeting(choice: HostChoice, baseClient: typeof pg.Client): HostTargeting | undefined {
    if (choice.hosts.length <= 1 && choice.targetSessionAttrs === 'any') return undefined;
    const single = connectionTarget(choice.poolConfig);
    const hosts = choice.hosts.length ? choice.hosts : single ? [{ host: single.host, port: single.port }] : [];
    return new HostTargeting(
      this.name,
      hosts,
      choice.targetSessionAttrs,
      choice.loadBalanceHosts,
      () => new baseClient(this.pool.options),
      { warn: (message) => this.warn(message), debug: (message) => this.debug(message), hostEvicted: () => this.closeEvictedIdle() },
      (text) => this.redact(text),
    );
  }

  /**
   * Closes the idle connections of an evicted host now. pg-pool offers no
   * way to close an idle client of one's choosing: each idle client is
   * checked out (an idle one is handed out before any new one is opened)
   * and released, closed if it is of the evicted host. Those checked out
   * meanwhile are closed as they come back (see isExpired()).
   */
  private closeEvictedIdle(): void {
    for (let idle = this.pool.idleCount; idle > 0; idle--) {
      this.pool.connect((error, client) => {
        if (!error && client) client.release(this.isExpired(client) ? new PoolError('its host was evicted') : undefined);
      });
    }
  }

  private lifetimeMillis(): number {
    const jitter = this.options.maxLifetimeJitter ?? DEFAULT_LIFETIME_JITTER;
    return (this.options.maxLifetimeSeconds ?? 0) * 1000 * (1 - Math.random() * jitter);
  }

  /** True when a new acquire would queue: no idle client and no room for another. */
  private mustWait(): boolean {
    return this.pool.idleCount === 0 && this.pool.totalCount >= this.max;
  }

  /** Says whether a failed acquire, begun at `waitStarted`, met a busy pool or a server that did not answer. */
  private acquireError(error: unknown, waitStarted: number): PoolUnavailableError {
    const refusal = this.describeAcquireError(error, Math.round(performance.now() - waitStarted));
    this.availability.refused(refusal, waitStarted);
    return refusal;
  }

  /**
   * Reads what happened from the pool, not from pg-pool's messages: pg-pool
   * gives up on a connection (waiting in its queue, or opening a new one)
   * after `connectionTimeoutMillis`, with an error that has no `code`, where
   * a failure of the server or the network comes with one. A timeout while
   * every connection is open and lent out is an exhausted pool; any other is
   * a server that did not answer in time. A pool ended meanwhile (also with
   * `@InjectPool()`'s `end()`) is closed.
   */
  private describeAcquireError(error: unknown, waited: number): PoolUnavailableError {
    if (this.closing) return new PoolClosedError(this.name);
    // Host targeting's own verdict (no host matches), already worded.
    if (error instanceof PoolUnavailableError) {
      this.stats.recordError();
      return error;
    }
    const timeout = this.pool.options.connectionTimeoutMillis ?? 0;
    const timedOut = timeout > 0 && waited >= timeout - TIMER_SLACK_MS && codeOf(error) === undefined;
    if (timedOut) this.stats.recordAcquireTimeout();
    else this.stats.recordError();
    if (this.pool.ending) return new PoolClosedError(this.name);
    if (timedOut && this.stats.connectedCount() - this.pool.idleCount >= this.max) {
      return new PoolExhaustedError(this.name, waited, this.counts());
    }
    return this.connectError(timedOut ? `no connection within ${waited} ms` : this.reasonOf(error), error);
  }

  /** Why no connection could be opened: credentials refused, or a server that did not take it. */
  private connectError(reason: string, error: unknown, attempts?: number): DatabaseUnreachableError {
    const code = codeOf(error);
    const Refusal = code !== undefined && AUTHENTICATION_FAILURES.has(code) ? AuthenticationFailedError : DatabaseUnreachableError;
    return new Refusal(this.name, this.target, reason, code, attempts);
  }

  private async drainAndEnd(since: number): Promise<void> {
    this.startupRetries?.stop();
    for (const recipient of this.waiting.takeAll()) recipient.refused(new PoolClosedError(this.name));
    const ended = this.pool.end();
    const timeout = this.options.drainTimeoutMillis ?? DEFAULT_DRAIN_TIMEOUT_MS;
    const left = Math.max(0, timeout - (performance.now() - since));
    if (this.stats.lentOut > 0 && !(await settlesWithin(ended, left))) {
      const out = [...this.connections].flatMap((client) => leaseOf(client) ?? []);
      this.warn(`${out.length} connection(s) still checked out after ${timeout} ms; closing them`);
      const reason = new PoolError(`datasource "${this.name}" shut down`);
      await Promise.all(out.map((lease) => lease.destroy(reason)));
    }
    // pg-pool's end() waits for every client it lent, the module's or not (a
    // pool.connect() of @InjectPool never released, a connection still
    // opening with no connectionTimeoutMillis): shutdown does not wait for ever on those.
    if (!(await settlesWithin(ended, timeout))) {
      this.warn(
        `the pool has not ended ${timeout} ms after its last lease: ${this.pool.totalCount} connection(s) ` +
          'taken with pool.connect() and not released, or still opening; shutdown goes on without them',
      );
    }
  }

  private reasonOf(error: unknown): string {
    return this.redact(error instanceof Error ? error.message || error.name : String(error));
  }

  private redact(text: string): string {
    return redactSecrets(text, this.options);
  }
}

/** The hosts and targeting of `options` (validated before: see validatePoolOptions()). */
function hostChoiceOf(name: string, options: PoolModuleOptions, config: Omit<PoolModuleOptions, 'targetSessionAttrs' | 'loadBalanceHosts'>): HostChoice {
  const choice = readHostChoice(options, config as pg.PoolConfig);
  if ('reason' in choice) throw new InvalidPoolOptionsError(name, choice.option, choice.reason);
  return choice;
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}
