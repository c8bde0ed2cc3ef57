import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { DatabaseError } from 'pg';
import {
  ConnectionFailedError,
  ConnectionScopeClosedError,
  DeadlineExceededError,
  PoolError,
  RequestAbandonedError,
  RequestSettingsFailedError,
  WorkCancelledError,
} from '../pool.errors.js';
import { sendCancelRequest } from './cancel-request.js';
import { textOf, type QueryCallback, type QueryInput } from './query-input.js';
import { RawClient, type RawClientOwner } from './raw-client.js';
import { DEALLOCATE_ALL, RESET_SETTINGS, sessionResets } from './session-state.js';
import { beginWithSettings, carryingSettings, SettingsStatement, type SessionSettings } from './session-settings.js';
import { describeHolder, type ScopeHolder } from './scope-holder.js';
import { backendKeyOf, endsSession, forgetDeallocatedStatements, isInTransaction, whenReadyForQuery } from './pg-client-state.js';
import type { Turns } from './turns.js';

// The lease a checked-out client belongs to, read by the one 'error' listener all clients share.
const LEASE = Symbol('nestjs-pg-pool:lease');
type LeasedClient = PoolClient & { [LEASE]?: ConnectionLease };

function onLeasedClientError(this: LeasedClient, error: Error): void {
  this[LEASE]?.clientFailed(error);
}

/** The lease `client` is checked out under, if the module lent it. */
export function leaseOf(client: PoolClient): ConnectionLease | undefined {
  return (client as LeasedClient)[LEASE];
}

/**
 * A checked-out client whose connection drops emits 'error'; with no
 * listener that kills the process (node-postgres #1611, #2635). Each client
 * of a datasource gets this one listener when it connects, and it tells the
 * client's lease, if it has one: adding and removing a listener on every
 * checkout cost more. While the client is idle, pg-pool's own listener
 * handles the error; a client checked out of the pool directly
 * (`@InjectPool()`) has no lease, and the listener only keeps the process
 * alive: its queries fail on their own.
 */
export function watchLeasedClient(client: PoolClient): void {
  client.on('error', onLeasedClientError);
}

// SQLSTATE query_canceled: what a query the module had cancelled fails with.
const QUERY_CANCELED = '57014';

type PgCallback<R extends QueryResultRow> = (error: Error | null, result: QueryResult<R>) => void;

/**
 * pg's promise API re-captures a failed query's stack here, in a reaction
 * its caller awaits, so that the stack leads back to the application rather
 * than to the socket read; the module's queries use pg's callback API and
 * keep that. A cancellation (see CancelReason) leaves the promise quiet (see quietly()).
 */
export function withCallerStack<T>(promise: Promise<T>): Promise<T> {
  return passOnFailure(promise, true);
}

/** `promise`, quiet (see quietly()) if it rejects with a WorkCancelledError. */
export function quietIfCancelled<T>(promise: Promise<T>): Promise<T> {
  return passOnFailure(promise, false);
}

function passOnFailure<T>(promise: Promise<T>, recaptureStack: boolean): Promise<T> {
  const settled: Promise<T> = promise.catch((error: unknown) => {
    if (recaptureStack && error instanceof Error) Error.captureStackTrace(error);
    if (error instanceof WorkCancelledError) quietly(settled);
    throw error;
  });
  return settled;
}

/**
 * Why the module cancels a lease's work, as the error that work fails
 * with: its requester hung up (499) or its deadline passed (504).
 */
export type CancelReason = (datasource: string, options?: { cause: unknown }) => WorkCancelledError;

export const HUNG_UP: CancelReason = (datasource, options) => new RequestAbandonedError(datasource, options);
export const DEADLINE_PASSED: CancelReason = (datasource, options) => new DeadlineExceededError(datasource, options);

/**
 * Marks `promise` as handled, so that Node does not end the process when
 * its caller leaves its rejection unhandled; a caller that awaits it still
 * gets the rejection. For what the module cancels or refuses because the
 * request's client left: it often lands in work nobody awaits any more.
 */
export function quietly<T>(promise: Promise<T>): Promise<T> {
  promise.catch(ignore);
  return promise;
}

function ignore(): void {}

/**
 * What a lease needs of the datasource its client came from, given as one
 * small object so that this layer knows nothing of poolers, replicas or
 * options: the datasource composes it from its options.
 */
export interface LeasePolicy {
  /** The datasource's name, for errors and logs. */
  readonly name: string;
  /** A client held longer (ms) logs one warning; 0: never. */
  readonly leakDetectionThreshold: number;
  /** SQL run on every client before it goes back (`resetOnRelease`). */
  readonly resetOnRelease: string | undefined;
  /** Why a statement may not run on this datasource's connections, if it may not (a transaction-mode pooler). */
  readonly refuseStatement: ((input: QueryInput) => Error | undefined) | undefined;
  /**
   * A request's settings (see SessionSettings) go into each transaction
   * (`set_config(…, true)`) rather than on the session: behind a
   * transaction-mode pooler each transaction may run on another server connection.
   */
  readonly settingsPerTransaction: boolean;
  /** Whether a finished command may have written; set where the request's later reads must stay on the primary. */
  readonly mayHaveWritten: ((command: string | null | undefined) => boolean) | undefined;
  /** True when the connection outlived its lifetime (or its host was evicted) and must be closed, not reused. */
  isExpired(client: PoolClient): boolean;
  /**
   * Whether the server's `error` on `client` says the client's host no
   * longer serves this datasource (a 25006 where writes are expected): the
   * error to answer with instead, the connection then being closed.
   * Asked once the server's ReadyForQuery has come, with what it reported before it.
   */
  readonly hostLost: ((client: PoolClient, error: Error) => Error | undefined) | undefined;
  /** The lease's client is back in the pool (or closed). */
  released(lease: ConnectionLease): void;
  warn(message: string): void;
}

/**
 * One client checked out of a datasource's pool, and everything the module
 * must know to release it safely: whether a query is still running, whether
 * its connection broke, whether the server says a transaction is open.
 */
export class ConnectionLease implements RawClientOwner {
  /** `performance.now()` when the client was handed over, for the hold-time statistics. */
  readonly acquiredAt = performance.now();
  /**
   * The scope slot that holds the client: told when it goes back with a
   * transaction open, and when its host was lost (the HTTP scope then tells
   * its client when to retry).
   */
  owner: { transactionCut(): void; connectionLost(error: Error): void } | undefined = undefined;
  /** Transactions on this client take turns (set by the first one; see transaction.ts). */
  transactionTurns: Turns | undefined = undefined;
  /** Queries sent or waiting for their turn. */
  private running = 0;
  /** Queries waiting for the one on the connection to end; each is told whether it is refused instead. */
  private waiting: Array<(refused: Error | undefined) => void> | undefined = undefined;
  private brokenBy: Error | undefined = undefined;
  private released = false;
  /** Set when its work was cancelled (`release(reason)`, `destroy()`): what that work fails with. */
  private cancelledBy: CancelReason | undefined = undefined;
  /** A cancel request is on its way; resolves once the server has acted on it or the connection is given up. */
  private cancelling: Promise<void> | undefined = undefined;
  /** Set once the way back started (rollback, reset), so that it starts once. */
  private releasing = false;
  /** Set once the client went back to pg-pool: `destroy()` may come while `release()` still rolls back. */
  private inPool = false;
  /** The client as handed to the application (`getClient()`), once it was. */
  private raw: RawClient | undefined = undefined;
  /** What undoes the session state the holder left (see session-state.ts), run before anyone else borrows the client. */
  private sessionResets: Set<string> | undefined = undefined;
  /** The request's settings (see applySettings()): on the session, or carried into each transaction. */
  private settings: SessionSettings | undefined = undefined;
  private leakTimer: NodeJS.Timeout | undefined = undefined;
  private leakReported = false;

  constructor(
    readonly policy: LeasePolicy,
    readonly client: PoolClient,
    /** Who holds the client (route, handler), for leak warnings. */
    holder?: ScopeHolder,
    /** Made where the client was asked for, before any await: its stack says where, in leak warnings. */
    askedAt?: Error,
  ) {
    // Found there by the client's 'error' listener (watchLeasedClient).
    (client as LeasedClient)[LEASE] = this;
    const threshold = policy.leakDetectionThreshold;
    if (threshold) {
      // The stack is only formatted (which costs) if a warning needs it.
      const acquiredBy = askedAt ?? new Error('acquired here');
      this.leakTimer = setTimeout(() => this.reportLeak(acquiredBy.stack ?? '', describeHolder(holder)), threshold);
      this.leakTimer.unref();
    }
  }

  get isReleased(): boolean {
    return this.released;
  }

  /** True once its connection failed, or must be closed for another reason: it will not be reused. */
  get isBroken(): boolean {
    return this.brokenBy !== undefined;
  }

  /** True while a query runs on the client or waits for its turn. */
  get isBusy(): boolean {
    return this.running > 0;
  }

  /**
   * Set once a statement that may have written ran on this client (tracked
   * only for datasources with replicas): the scope's reads then stay on the
   * primary, so a request always reads its own writes.
   */
  wrote = false;

  /** True once the raw client was handed out (`getClient()`): what runs on it is not the lease's to see. */
  get clientTaken(): boolean {
    return this.raw !== undefined;
  }

  /** The client for the application's own use (see raw-client.ts), one wrapper per lease. */
  rawClient(): PoolClient {
    return (this.raw ??= new RawClient(this.client, this)).proxy;
  }

  /**
   * The application released its raw client: the hold ends now, or
   * once the module's transaction on it ends, which owns the client till then.
   */
  releaseFromApplication(reason: Error | undefined): void {
    const release = (): void => {
      if (reason) this.brokenBy ??= reason;
      this.release();
    };
    if (this.inTransactions) void this.outsideTransactions().then(release);
    else release();
  }

  /** True once the holder changed the session (a SET, a LISTEN, …): the client stays with it to the end. */
  get changedSession(): boolean {
    return this.sessionResets !== undefined;
  }

  /** What a finished query leaves to track: session state to undo, a write (on datasources with replicas). */
  noteCommands(result: QueryResult | QueryResult[] | undefined, input: QueryInput | undefined): void {
    if (result === undefined) return;
    if (Array.isArray(result)) {
      for (const one of result) this.noteCommands(one, input);
      return;
    }
    const resets = sessionResets(result.command, typeof input === 'string' ? input : input?.text);
    for (const reset of resets) (this.sessionResets ??= new Set()).add(reset);
    if (this.policy.mayHaveWritten?.(result.command)) this.wrote = true;
  }

  /**
   * Gives the holder's statements the request's settings (see
   * SessionSettings): on the session, set before any query sent after this
   * and reset before the client goes back (which does not pin the client to
   * the request: the next client gets them too); or, where they go per
   * transaction, carried into each transaction (see run()). If the server
   * refuses them, every query of the lease fails with
   * RequestSettingsFailedError and the connection is closed.
   */
  applySettings(settings: SessionSettings): void {
    this.settings = settings;
    if (this.policy.settingsPerTransaction) return;
    this.send(settings.forSession, undefined, false, ignore);
  }

  /** True while a transaction runs, or waits to run, on this client. */
  get inTransactions(): boolean {
    return this.transactionTurns !== undefined && this.transactionTurns.busy;
  }

  /** Resolves once no transaction runs on this client. */
  outsideTransactions(): Promise<void> {
    return this.transactionTurns?.idle() ?? Promise.resolve();
  }

  /**
   * One promise of the module's own around pg's callback (an async function
   * awaiting pg's promise would make four, each costing async hooks while
   * AsyncLocalStorage is on), plus the reaction that fixes a failure's stack.
   */
  query<R extends QueryResultRow>(input: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>> {
    return withCallerStack(
      new Promise<QueryResult<R>>((resolve, reject) => this.send<R>(input, values, false, (error, result) => (error ? reject(error) : resolve(result!)))),
    );
  }

  /**
   * A query through pg's callback API: the lease learns the query
   * ended (and with `releaseAfter` hands the client back), then `done` gets
   * the outcome. Calls `done` exactly once.
   */
  send<R extends QueryResultRow>(input: QueryInput, values: readonly unknown[] | undefined, releaseAfter: boolean, done: QueryCallback<R>): void {
    const refusal = this.whyRefused(input);
    if (refusal) {
      if (releaseAfter) this.release();
      return done(refusal);
    }
    // One query at a time: the others of the scope (a Promise.all) wait here,
    // in order. node-postgres' own queue warns, and goes in pg 9.
    if (++this.running > 1) {
      (this.waiting ??= []).push((refused) => {
        if (!refused) return this.dispatch(input, values, releaseAfter, done);
        this.queryEnded(releaseAfter);
        done(refused);
      });
      return;
    }
    this.dispatch(input, values, releaseAfter, done);
  }

  private dispatch<R extends QueryResultRow>(input: QueryInput, values: readonly unknown[] | undefined, releaseAfter: boolean, done: QueryCallback<R>): void {
    try {
      this.run<R>(input, values, (error, result) => {
        // Before the client may go back: a broken one must be marked so first.
        if (error) this.noteBroken(error);
        else if (this.settings === undefined || !(input instanceof SettingsStatement)) this.noteCommands(result, input);
        const ended = (): void => {
          const outcome = error ? this.outcomeOf(error) : undefined;
          this.queryEnded(releaseAfter);
          done(outcome, result);
        };
        // A failure is reported once the server says whether a transaction is still open (see whenReadyForQuery).
        if (error && !this.brokenBy) whenReadyForQuery(this.client, ended);
        else ended();
      });
    } catch (error) {
      // Thrown before the query was queued (e.g. no text): pg calls nothing back.
      this.queryEnded(releaseAfter);
      done(error as Error);
    }
  }

  /**
   * Sends `input` on the client, with the request's settings where they go
   * into each transaction (see carryingSettings()): a BEGIN sent as text
   * takes them in the same simple query; another statement outside a
   * transaction runs in one of its own that sets them, which costs two
   * round trips more.
   */
  private run<R extends QueryResultRow>(input: QueryInput, values: readonly unknown[] | undefined, callback: PgCallback<R>): void {
    const settings = this.settings;
    const carry = settings !== undefined && this.policy.settingsPerTransaction && !isInTransaction(this.client) ? carryingSettings(input) : 'none';
    if (carry === 'none') {
      if (settings !== undefined && input instanceof SettingsStatement) {
        return void this.client.query<R>(input, (error, result) => callback(error && this.settingsFailed(error), result));
      }
      // pg takes (config, values, callback) as well as (text, values, callback); its typings only the latter.
      return void this.client.query<R>(input as string, values as unknown[], callback);
    }
    const begin = beginWithSettings(carry === 'append' ? textOf(input) : 'BEGIN', settings!);
    this.client.query(begin, (error: Error | null, results: QueryResult) => {
      // The BEGIN's result is the statement's own; the settings' is the module's.
      if (error || carry === 'append') return callback(error && this.settingsFailed(error), (results as unknown as Array<QueryResult<R>>)?.[0]);
      this.client.query<R>(input as string, values as unknown[], (failure, result) => {
        const end = (): void => void this.client.query(failure ? 'ROLLBACK' : 'COMMIT', (ended: Error | null) => callback(failure ?? ended, result));
        if (failure) whenReadyForQuery(this.client, end);
        else end();
      });
    });
  }

  /**
   * The server refused the request's settings: the lease is broken with a
   * RequestSettingsFailedError, which every later query of it fails with,
   * as none may run without them. A failure that is not the server's answer
   * (the connection failed, the module cancelled the statement) stays as it is.
   */
  private settingsFailed(error: Error): Error {
    if (!(error instanceof DatabaseError) || endsSession(error) || this.cancelledBy) return error;
    return (this.brokenBy ??= new RequestSettingsFailedError(this.policy.name, { cause: error }));
  }

  /**
   * Gives the client back once its running queries end. With a `cancel`
   * reason (the request that used them is gone, or out of time), the server
   * is first asked to cancel them, and the client goes back only once the
   * server has acted on that too (see cancel()). Safe to call more than once.
   */
  release(cancel?: CancelReason): void {
    if (this.released) return;
    this.released = true;
    if (cancel) this.cancel(cancel);
    this.releaseOnceIdle();
  }

  /**
   * Closes the connection at once, whatever it is doing (shutdown past its
   * drain timeout). A running query is cancelled on the server too, which
   * would otherwise run it to its end for nobody, holding its locks; resolves
   * once the server has acted on that cancel request.
   */
  async destroy(reason: Error): Promise<void> {
    this.brokenBy ??= reason;
    this.released = true;
    this.cancel(HUNG_UP);
    this.releasing = true;
    this.releaseToPool();
    await this.cancelling;
  }

  /**
   * The one way the module cancels a query, as nobody waits for its answer
   * any more or its request is out of time: its error becomes the reason's
   * (a RequestAbandonedError, a DeadlineExceededError), later queries are
   * refused with one. PostgreSQL cancels whatever the backend runs when the
   * request arrives, not a given query: a cancel that arrived after the next
   * borrower's query started would kill that one. So the client goes back
   * only once the server has closed the cancel request's connection, which
   * it does after acting on it; if that is not seen in time, the connection
   * is closed, never reused.
   */
  private cancel(reason: CancelReason): void {
    this.cancelledBy ??= reason;
    if (this.running === 0 || this.cancelling) return;
    const key = backendKeyOf(this.client);
    if (!key) return;
    this.cancelling = sendCancelRequest(key).then((settled) => {
      this.cancelling = undefined;
      if (settled) return this.releaseOnceIdle();
      this.brokenBy ??= new PoolError('the server did not confirm a cancel request in time');
      this.releaseNow();
    });
  }

  /** The client's connection failed (its 'error' event, or a query's error that ends the session): logged once. */
  clientFailed(error: Error): void {
    // node-postgres may report one failure twice (the server's FATAL, then the closed socket).
    if (this.brokenBy) return;
    this.brokenBy = error;
    this.policy.warn(`a checked-out connection failed (${error.message}) on ${this.client.host}:${this.client.port}; it will be closed, not reused`);
  }

  /** Why a query cannot run on this client now, if it cannot. */
  private whyRefused(input: QueryInput): Error | undefined {
    if (this.released) return this.cancelledBy ? this.cancelledBy(this.policy.name) : new ConnectionScopeClosedError(this.policy.name);
    if (this.brokenBy) return this.failure(this.brokenBy);
    return this.policy.refuseStatement?.(input);
  }

  private queryEnded(releaseAfter: boolean): void {
    this.running--;
    if (releaseAfter) this.released = true;
    const next = this.waiting?.shift();
    // A query that waited its turn runs unless the connection broke or its work was cancelled meanwhile.
    if (next) return next(this.brokenBy ? this.failure(this.brokenBy) : this.cancelledBy?.(this.policy.name));
    if (this.released) this.releaseOnceIdle();
  }

  /** Back to the pool once released, no query runs and no cancel request is on its way. */
  private releaseOnceIdle(): void {
    if (this.running === 0 && this.cancelling === undefined && this.released) this.releaseNow();
  }

  /**
   * A DatabaseError is the server answering, unless it is FATAL (the server
   * ends the session: pg_terminate_backend, shutdown) or of a class that
   * ends it (08, 57P01-57P05, at any severity); anything else (connection
   * terminated, query read timeout) leaves the client unusable too.
   */
  private noteBroken(error: Error): void {
    if (!(error instanceof DatabaseError) || endsSession(error)) this.clientFailed(error);
  }

  /** What a failed query answers: the server's error, or why its connection was closed. */
  private outcomeOf(error: Error): Error {
    if (error instanceof DatabaseError && !endsSession(error)) {
      if (this.cancelledBy && error.code === QUERY_CANCELED) return this.cancelledBy(this.policy.name, { cause: error });
      const lost = this.policy.hostLost?.(this.client, error);
      if (!lost) return error;
      this.brokenBy ??= lost;
      // A transaction of the module's runs again on its own (see withRetries()); other work's request is told when to retry.
      if (!this.inTransactions) this.owner?.connectionLost(lost);
      return lost;
    }
    const failure = this.failure(error);
    if (!this.inTransactions && failure instanceof ConnectionFailedError) this.owner?.connectionLost(failure);
    return failure;
  }

  /**
   * Back to the pool, clean: an open transaction (a handler that began one
   * and threw, or forgot to commit) is rolled back, `resetOnRelease` runs,
   * and a connection that broke, failed either step or outlived its
   * lifetime is closed instead of reused. Synchronous when there is nothing
   * to clean, as after almost every request.
   */
  private releaseNow(): void {
    if (this.releasing) return;
    this.releasing = true;
    if (isInTransaction(this.client)) this.owner?.transactionCut();
    if (this.raw?.hasWorkInFlight) this.leftOpen();
    const reset = this.policy.resetOnRelease;
    const onSession = this.settings !== undefined && !this.policy.settingsPerTransaction;
    if (!this.brokenBy && (reset || onSession || this.sessionResets || isInTransaction(this.client))) void this.cleanThenRelease(reset, onSession);
    else this.releaseToPool();
  }

  /**
   * The application's raw client still has a query, cursor or COPY open: the
   * connection is closed, which ends it, rather than lent out mid-statement.
   */
  private leftOpen(): void {
    const reason = new PoolError('a query, cursor or COPY of the raw client was still open as the hold ended');
    this.brokenBy ??= reason;
    // The backend would run a query to its end before it reads the close. Best effort: a cancel that
    // arrives before the query starts does nothing; it cannot reach another borrower, as this
    // connection is never lent again.
    const key = backendKeyOf(this.client);
    if (key) void sendCancelRequest(key);
    // A hang-up ends such work on purpose: quiet (see quietly()).
    if (!this.cancelledBy) this.policy.warn(`${reason.message} (close cursors and await queries before the request ends); its connection was closed`);
  }

  private async cleanThenRelease(reset: string | undefined, settingsOnSession: boolean): Promise<void> {
    try {
      if (isInTransaction(this.client)) await this.client.query('ROLLBACK');
      const undo = settingsOnSession ? new Set(this.sessionResets).add(RESET_SETTINGS) : this.sessionResets;
      if (undo) await this.client.query([...undo].join('; '));
      if (reset) await this.client.query(reset);
      if (reset || undo?.has(DEALLOCATE_ALL)) await forgetDeallocatedStatements(this.client);
    } catch (error) {
      this.brokenBy ??= error as Error;
    }
    this.releaseToPool();
  }

  private releaseToPool(): void {
    // destroy() during the awaits of cleanThenRelease already released the
    // client: a second client.release() would throw, unhandled, from its detached promise.
    if (this.inPool) return;
    this.inPool = true;
    if (!this.brokenBy && this.policy.isExpired(this.client)) {
      this.brokenBy = new PoolError('connection reached its maximum lifetime');
    }
    if (this.leakTimer !== undefined) clearTimeout(this.leakTimer);
    if (this.leakReported) {
      this.policy.warn(`a connection reported as possibly leaked came back after ${this.heldMillis()} ms`);
    }
    (this.client as LeasedClient)[LEASE] = undefined;
    this.raw?.retire();
    this.client.release(this.brokenBy);
    this.policy.released(this);
  }

  private heldMillis(): number {
    return Math.round(performance.now() - this.acquiredAt);
  }

  /** What the work of a broken lease fails with: why the server refused the request's settings, or why its connection was closed. */
  private failure(error: unknown): ConnectionFailedError | RequestSettingsFailedError {
    if (error instanceof RequestSettingsFailedError) return error;
    const reason = error instanceof Error ? error.message : String(error);
    return new ConnectionFailedError(this.policy.name, reason, { cause: error });
  }

  private reportLeak(acquiredBy: string, holder: string | undefined): void {
    this.leakReported = true;
    this.policy.warn(
      `a connection has been held for ${this.heldMillis()} ms ` +
        `(leakDetectionThreshold ${this.policy.leakDetectionThreshold} ms)` +
        `${holder ? ` by ${holder}` : ''}; it may have leaked. Acquired at:\n${acquiredBy}`,
    );
  }
}
