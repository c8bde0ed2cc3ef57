import type { QueryResult, QueryResultRow } from 'pg';
import { currentContext, runInContext } from '../context/request-context.js';
import { ConnectionScopeClosedError, DeadlineExceededError, RequestAbandonedError, type PoolError } from '../pool.errors.js';
import { DEADLINE_PASSED, HUNG_UP, quietly, withCallerStack, type ConnectionLease } from './connection-lease.js';
import { noteLateQuery } from './late-query.js';
import type { LeaseRecipient, LeaseSource } from './lease-source.js';
import { isInTransaction } from './pg-client-state.js';
import type { QueryInput } from './query-input.js';
import type { ScopeHolder } from './scope-holder.js';
import { SessionSettings } from './session-settings.js';

declare module '../context/request-context.js' {
  interface RequestContext {
    /** The connection scope the running code belongs to. */
    readonly scope: ConnectionScope;
  }
}

type LeaseCallback = (error: unknown, lease?: ConnectionLease) => void;

/**
 * The client of one datasource in a scope: asked for, then here (`lease`) or
 * refused (`error`). Who needs it meanwhile waits with a callback, so that the
 * first query of a request runs as soon as the client comes, in the
 * datasource's callback, without promises in between.
 */
class LeaseSlot implements LeaseRecipient {
  lease: ConnectionLease | undefined = undefined;
  /** Queries of the scope that wait for the client, for a transaction on it to end, or run on it. */
  pending = 0;
  private error: unknown = undefined;
  private refusedOnce = false;
  private waiters: LeaseCallback[] | undefined = undefined;
  /** Fires when the scope's deadline for this datasource passes (see ConnectionScope.deadlinePassed()). */
  private deadlineTimer: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly scope: ConnectionScope,
    readonly source: LeaseSource,
  ) {}

  wait(callback: LeaseCallback): void {
    if (this.lease !== undefined) callback(undefined, this.lease);
    else if (this.refusedOnce) callback(this.error);
    else (this.waiters ??= []).push(callback);
  }

  whenLeased(): Promise<ConnectionLease> {
    return new Promise((resolve, reject) => this.wait((error, lease) => (lease ? resolve(lease) : reject(error))));
  }

  received(lease: ConnectionLease): void {
    this.lease = lease;
    lease.owner = this;
    const { scope } = this;
    // The scope ended while the client was on its way. Its requester gone,
    // the queries are refused (unless the datasource lets them run, see
    // `queriesAfterHangUp`). Otherwise the queries asked for before its end
    // run first (they are sent as the waiters get the client), as on a
    // client the scope held.
    const refusal = scope.isClosed ? scope.whyRefusedAfterEnd(this.source, true) : scope.deadlineRefusal(this.source);
    if (refusal) {
      lease.release();
      return this.flush(refusal, undefined);
    }
    scope.prepare(lease);
    this.flush(undefined, lease);
    if (scope.isClosed) lease.release();
  }

  /** The client went back with a transaction open, rolled back: after the scope's end, see ConnectionScope.whyRefusedAfterEnd(). */
  transactionCut(): void {
    if (this.scope.isClosed) this.scope.cutTransaction(this.source);
  }

  /** The client's connection failed, or its host no longer serves the datasource: the request may succeed if retried (see clientRefused()). */
  connectionLost(error: Error): void {
    this.scope.clientRefused(error);
  }

  refused(error: Error): void {
    this.clearDeadline();
    this.error = error;
    this.refusedOnce = true;
    // A failed borrow leaves nothing to release; the next query may try again.
    this.scope.forget(this);
    this.scope.clientRefused(error);
    this.flush(error, undefined);
  }

  /**
   * Releases the client before the scope ends, unless it is still on its
   * way, needed by a query of the scope (running, or waiting for it or for a
   * transaction on it to end), in a transaction (the module's or a raw
   * `BEGIN`), out as a raw client (`getClient()`: a cursor or a COPY stream
   * may still read from it), holding session state the request set (its
   * later queries must see it), or wrote on a datasource with replicas (only
   * those track `wrote`: the request's later reads must stay on the primary).
   */
  releaseIfFree(): boolean {
    const lease = this.lease;
    if (lease === undefined || this.pending > 0 || lease.isBusy || lease.inTransactions) return false;
    if (lease.wrote || lease.clientTaken || lease.changedSession || isInTransaction(lease.client)) return false;
    this.clearDeadline();
    lease.release();
    return true;
  }

  /** Arms the timer of the scope's deadline for this datasource, at `at` on performance.now()'s clock. */
  armDeadline(at: number): void {
    this.clearDeadline();
    const { scope, source } = this;
    this.deadlineTimer = setTimeout(() => scope.deadlinePassed(source), Math.max(0, at - performance.now()));
    // The request's sockets keep the process alive while it runs; this timer alone should not.
    this.deadlineTimer.unref();
  }

  clearDeadline(): void {
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = undefined;
  }

  /** The deadline passed: the client's running work is cancelled and it goes back; queries waiting for a client still on its way are refused. */
  outOfTime(): void {
    this.clearDeadline();
    if (this.lease !== undefined) this.lease.release(DEADLINE_PASSED);
    else this.flush(new DeadlineExceededError(this.source.name), undefined);
  }

  private flush(error: unknown, lease: ConnectionLease | undefined): void {
    const waiters = this.waiters;
    this.waiters = undefined;
    if (waiters) for (const waiter of waiters) waiter(error, lease);
  }
}

/**
 * The unit of work that owns at most one client of each datasource: a
 * request, a message, or a `ConnectionScope.run()` call. Clients are borrowed
 * on the first query and released at the end (`clientHold: 'request'`), or
 * after each query unless something pins them (`clientHold: 'query'`, and
 * long-lived answers: see holdPerQuery()).
 */
export class ConnectionScope {
  /** @internal A scope is its own context (see RequestContext): the one of its code outside transactions. */
  readonly scope: ConnectionScope = this;
  // Most scopes use one datasource: its slot sits in a field, the others (if any) in a Map made on demand.
  private first: LeaseSlot | undefined = undefined;
  private others: Map<LeaseSource, LeaseSlot> | undefined = undefined;
  private closed = false;
  private aborted = false;
  /** Every datasource's client goes back after each query (see holdPerQuery()). */
  private perQuery = false;
  /**
   * Opened by `ConnectionScope.run()`, for work outside requests, whose caller
   * asked for one client throughout: `clientHold: 'query'` does not apply, nor
   * does `requestDeadlineMillis` (a deadline of its own still can be set).
   */
  private byRun = false;
  /** Datasources whose client went back after the end with a transaction open (rolled back). */
  private cutTransactions: LeaseSource[] | undefined = undefined;
  /** `performance.now()` as the scope opened: deadlines count from there. */
  private readonly startedAt = performance.now();
  /** The deadline the scope was given (see setDeadline()), on performance.now()'s clock; it overrides the datasources' `requestDeadlineMillis`. */
  private deadlineAt: number | undefined = undefined;
  /** Datasources whose deadline passed: the scope's work on them is refused. */
  private outOfTime: LeaseSource[] | undefined = undefined;
  /** What every client of the scope is given before its first query (see setSettings()). */
  private settings: SessionSettings | undefined = undefined;
  // Let go of when the scope ends (see end()).
  private holder: ScopeHolder | undefined;

  /**
   * @internal
   * @param holder names who holds the scope (route, handler) in leak warnings.
   */
  constructor(holder?: ScopeHolder) {
    this.holder = holder;
  }

  /** The scope of the running code, if any. */
  static current(): ConnectionScope | undefined {
    return currentContext()?.scope;
  }

  /**
   * Runs `fn` in a scope of its own: its queries on each datasource share one
   * client, released when `fn` settles. For work outside a request (cron jobs,
   * queue consumers, scripts) that needs one connection throughout.
   */
  static run<T>(fn: () => T | Promise<T>): Promise<T> {
    const scope = new ConnectionScope();
    scope.byRun = true;
    // Work a request starts in a scope of its own runs with the request's settings (see setRequestSettings()).
    scope.settings = ConnectionScope.current()?.settings;
    let result: T | Promise<T>;
    try {
      result = runInContext(scope, fn);
    } catch (error) {
      scope.close();
      return Promise.reject(error);
    }
    // One reaction rather than an async function's await and its own promise.
    return Promise.resolve(result).then(
      (value) => {
        scope.close();
        return value;
      },
      (error: unknown) => {
        scope.close();
        throw error;
      },
    );
  }

  /** @internal */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * @internal A query on the scope's client of `source`, once no transaction
   * runs on that client (a query made outside them must not land in one).
   * After the scope's end, see `refuseAfterEnd()`.
   */
  query<R extends QueryResultRow>(source: LeaseSource, input: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>> {
    const slot = this.slotOf(source);
    const lease = slot?.lease;
    const perQuery = this.holdsPerQueryOn(source);
    // The usual case after the first query: the client is here and free. No
    // promise or await of the module's own (each costs async hooks).
    if (!perQuery && lease !== undefined && !lease.isReleased && !lease.inTransactions) return lease.query<R>(input, values);
    if (this.closed) return this.refuseAfterEnd(source) ?? source.query<R>(input, values);
    const outOfTime = this.deadlineRefusal(source);
    if (outOfTime) return quietly(Promise.reject(outOfTime));
    // Asked for here, not in the promise's executor: a leak warning's stack then starts at the caller.
    const arriving = slot !== undefined && !lease?.isReleased ? slot : this.borrow(source);
    arriving.pending++;
    return withCallerStack(
      new Promise<QueryResult<R>>((resolve, reject) => {
        const settle = (failure: unknown, result?: QueryResult<R>): void => {
          arriving.pending--;
          // Held only while needed: back once no query of the request needs it, unless something pins it.
          if (perQuery && arriving.releaseIfFree()) this.forget(arriving);
          if (failure) reject(failure);
          else resolve(result!);
        };
        arriving.wait((error, arrived) => {
          if (!arrived) return settle(error);
          const send = (): void => arrived.send<R>(input, values, false, settle);
          if (arrived.inTransactions) arrived.outsideTransactions().then(send, settle);
          else send();
        });
      }),
    );
  }

  /** @internal The scope's client of `source`, borrowed on first use. */
  lease(source: LeaseSource): Promise<ConnectionLease> {
    // A raw client asked for after the end would have nobody to release it: refused, quietly for an abandoned request.
    if (this.closed) {
      return this.aborted ? quietly(Promise.reject(new RequestAbandonedError(source.name))) : Promise.reject(new ConnectionScopeClosedError(source.name));
    }
    const outOfTime = this.deadlineRefusal(source);
    if (outOfTime) return quietly(Promise.reject(outOfTime));
    const existing = this.slotOf(source);
    // A client closed mid-scope (its transaction could not be rolled back) is replaced by a fresh one.
    const slot = existing !== undefined && !existing.lease?.isReleased ? existing : this.borrow(source);
    return slot.whenLeased();
  }

  /** @internal The scope's client of `source` if it already holds one. */
  heldLease(source: LeaseSource): ConnectionLease | undefined {
    const lease = this.slotOf(source)?.lease;
    return lease?.isReleased ? undefined : lease;
  }

  /**
   * @internal Work of `source` that comes after this scope ended (a missing
   * `await`, a listener, fire-and-forget writes): a rejection marked handled
   * when it is refused (see `whyRefusedAfterEnd()`; such work is often
   * awaited by nobody, see quietly()); otherwise undefined, and the work runs
   * as it would outside any scope, on clients of its own, and its call site
   * is noted once at debug level.
   */
  refuseAfterEnd(source: LeaseSource): Promise<never> | undefined {
    const refusal = this.whyRefusedAfterEnd(source);
    if (refusal) return quietly(Promise.reject(refusal));
    noteLateQuery(source);
    return undefined;
  }

  /**
   * @internal Why work of this ended scope on `source` is refused, if it is:
   * its client went back with a transaction open (a raw `BEGIN` that
   * outlived the request, or one cut by a hang-up), the request set
   * settings, which work on a client of its own would run without (unless
   * `onOwnClient`: the scope's client, given them, arrived after the end for
   * work asked for before it), or the requester hung up and the datasource
   * refuses the abandoned request's work (`queriesAfterHangUp: 'refuse'`).
   */
  whyRefusedAfterEnd(source: LeaseSource, onOwnClient = false): PoolError | undefined {
    // Its statements would run outside the transaction they were written for, each committed on its own.
    if (this.cutTransactions?.includes(source)) {
      return this.aborted ? new RequestAbandonedError(source.name) : new ConnectionScopeClosedError(source.name, 'in a transaction');
    }
    // It would run on clients without the request's settings: for row-level security, as nobody's.
    if (this.settings && !onOwnClient) return this.aborted ? new RequestAbandonedError(source.name) : new ConnectionScopeClosedError(source.name, 'with request settings');
    if (!this.aborted || !source.refusesAfterHangUp) return undefined;
    return new RequestAbandonedError(source.name);
  }

  /**
   * @internal Gives every client of the scope `values` (see
   * ConnectionLease.applySettings()), added to earlier ones: the clients it
   * holds now, after the queries already sent on them, and those it borrows
   * later, before their first query.
   */
  setSettings(values: ReadonlyMap<string, string>): void {
    const settings = this.settings?.merged(values) ?? new SessionSettings(values);
    this.settings = settings;
    for (const lease of this.heldLeases()) lease.applySettings(settings);
  }

  /** @internal Readies a client the scope borrowed for its work: the request's settings, if it set any. */
  prepare(lease: ConnectionLease): void {
    if (this.settings !== undefined) lease.applySettings(this.settings);
  }

  /** @internal True when a client of the scope runs a transaction (its own, or a raw `BEGIN`). */
  get inTransaction(): boolean {
    return this.heldLeases().some((lease) => lease.inTransactions || isInTransaction(lease.client));
  }

  /** The clients the scope holds now (not those on their way). */
  private heldLeases(): ConnectionLease[] {
    const slots = this.others ? [this.first, ...this.others.values()] : [this.first];
    return slots.flatMap((slot) => (slot?.lease !== undefined && !slot.lease.isReleased ? [slot.lease] : []));
  }

  /**
   * @internal Gives the scope a deadline `millis` after its start or after
   * now, for its work on every datasource (in place of their
   * `requestDeadlineMillis`): the clients it holds get their timers re-armed.
   */
  setDeadline(millis: number, from: 'start' | 'now'): void {
    const at = (from === 'start' ? this.startedAt : performance.now()) + millis;
    this.deadlineAt = at;
    this.first?.armDeadline(at);
    if (this.others) for (const slot of this.others.values()) slot.armDeadline(at);
  }

  /** @internal Why work on `source` is refused for want of time, if it is: its deadline passed (noticed here if its timer has not fired yet). */
  deadlineRefusal(source: LeaseSource): DeadlineExceededError | undefined {
    if (this.outOfTime === undefined) {
      const at = this.deadlineOf(source);
      if (at === undefined || performance.now() < at) return undefined;
      this.deadlinePassed(source);
    } else if (!this.outOfTime.includes(source)) {
      return undefined;
    }
    return new DeadlineExceededError(source.name);
  }

  /**
   * @internal The scope's deadline for `source` passed: the query running
   * there is cancelled on the server (as on a hang-up: the client goes back
   * once the server has acted on the cancel) and a transaction rolled back,
   * and the scope's later work there is refused. The scope itself stays open:
   * its request still answers, with a 504 when it meets the error.
   */
  deadlinePassed(source: LeaseSource): void {
    if (this.closed || this.outOfTime?.includes(source)) return;
    (this.outOfTime ??= []).push(source);
    const slot = this.slotOf(source);
    if (slot === undefined) return;
    this.forget(slot);
    slot.outOfTime();
  }

  private deadlineOf(source: LeaseSource): number | undefined {
    return this.deadlineAt ?? (source.deadlineMillis > 0 && !this.byRun ? this.startedAt + source.deadlineMillis : undefined);
  }

  /** @internal See LeaseSlot.transactionCut(). */
  cutTransaction(source: LeaseSource): void {
    (this.cutTransactions ??= []).push(source);
  }

  /**
   * @internal The request's answer is on its way: its clients go back now,
   * each once its running query ends, rather than once the answer is
   * written. Those releaseIfFree() keeps stay to the end. The scope stays
   * open: a query after this borrows a client again.
   */
  releaseIdleClients(): void {
    if (this.first?.releaseIfFree()) this.first = undefined;
    const others = this.others;
    if (others) for (const [source, slot] of others) if (slot.releaseIfFree()) others.delete(source);
  }

  /**
   * @internal From now on the scope holds its clients only while needed, as
   * with `clientHold: 'query'`: every client it can let go of goes back now,
   * and each later query's client goes back as the query ends, unless
   * something pins it (see LeaseSlot.releaseIfFree()). For a long-lived
   * answer (an `@Sse()` route, a streamed body), which must not pin a pooled
   * client for its whole life.
   */
  holdPerQuery(): void {
    this.perQuery = true;
    this.releaseIdleClients();
  }

  /** @internal A transaction of this scope ended: where clients are held per query, its client goes back. */
  transactionEnded(source: LeaseSource): void {
    if (this.holdsPerQueryOn(source)) this.releaseIdleClients();
  }

  /** @internal Ends the scope and releases every client (once its running query ends). */
  close(): void {
    this.end(false);
  }

  /** @internal Ends the scope because its requester is gone: running queries are cancelled. */
  abort(): void {
    this.end(true);
  }

  /** @internal A client could not be had for this scope, or its host was lost (the HTTP scope tells its client when to retry). */
  clientRefused(_error: Error): void {}

  /** @internal Drops the slot of a borrow that failed or of a client released before the end. */
  forget(slot: LeaseSlot): void {
    if (this.first === slot) this.first = undefined;
    else if (this.others?.get(slot.source) === slot) this.others.delete(slot.source);
  }

  /** @internal Lets go of what the scope keeps of its owner once it ends (see end()). */
  protected ended(): void {}

  private holdsPerQueryOn(source: LeaseSource): boolean {
    return this.perQuery || (source.holdsPerQuery && !this.byRun);
  }

  private slotOf(source: LeaseSource): LeaseSlot | undefined {
    const first = this.first;
    if (first !== undefined && first.source === source) return first;
    return this.others?.get(source);
  }

  /** A new slot for `source` (in place of one whose client was closed or released), and its client asked for. */
  private borrow(source: LeaseSource): LeaseSlot {
    const slot = new LeaseSlot(this, source);
    // The slot replaced (its client closed mid-scope) keeps no timer.
    this.slotOf(source)?.clearDeadline();
    const first = this.first;
    if (this.others?.has(source)) this.others.set(source, slot);
    else if (first === undefined || first.source === source) this.first = slot;
    else (this.others ??= new Map()).set(source, slot);
    const deadline = this.deadlineOf(source);
    if (deadline !== undefined) slot.armDeadline(deadline);
    source.lend(this.holder, slot);
    return slot;
  }

  private end(cancel: boolean): void {
    if (this.closed) return;
    this.closed = true;
    this.aborted = cancel;
    const { first, others } = this;
    // Async resources made during the request keep this scope, their context,
    // as long as they live: Node's keep-alive timer of the socket until the
    // next request, pg-pool's idle timer of the client for seconds. Holding
    // on to the request, its response and its leases from here kept each
    // request's objects alive into the old generation, which cost more GC
    // than all of the module's work per request.
    this.first = this.others = this.holder = undefined;
    this.ended();
    if (first) releaseAtEnd(first, cancel);
    if (others) for (const slot of others.values()) releaseAtEnd(slot, cancel);
  }
}

/**
 * A client goes back at its scope's end once its running query ends; a
 * transaction of the module's own (`connection.transaction()`,
 * `@Transactional()`) that work not awaited by the request still runs on it
 * finishes first, unless the requester hung up.
 */
function releaseAtEnd(slot: LeaseSlot, cancel: boolean): void {
  slot.clearDeadline();
  const lease = slot.lease;
  if (lease === undefined) return;
  if (cancel) return lease.release(HUNG_UP);
  if (!lease.inTransactions) return lease.release();
  void lease.outsideTransactions().then(() => lease.release());
}
