import { AsyncLocalStorage } from 'node:async_hooks';
import type { ServerResponse } from 'node:http';
import type { QueryResult, QueryResultRow } from 'pg';
import type { Datasource, LeaseRecipient } from '../datasource/datasource.js';
import { ConnectionScopeClosedError, PoolUnavailableError, RequestAbandonedError, type PoolError } from '../pool.errors.js';
import type { OpenTransaction } from '../transaction/transaction.js';
import { quietly, withCallerStack, type ConnectionLease, type QueryInput } from './connection-lease.js';
import { noteLateQuery } from './late-query.js';
import { isInTransaction } from './pg-client-state.js';
import type { ScopeHolder } from './scope-holder.js';

// One AsyncLocalStorage carries the scope and the transactions (a scope is
// its own context; a transaction frame is a second object), so a query looks
// its context up once, and async hooks copy one store per async resource, not two.

/**
 * What the running code's async context holds: its connection scope and,
 * inside transactions, the innermost transaction of each datasource. A
 * `ConnectionScope` is one, with no transaction; the module makes the others.
 */
export interface ScopeContext {
  /** The connection scope the running code belongs to. */
  readonly scope: ConnectionScope;
  /** @internal Absent on a scope itself: no transaction runs there. */
  readonly transactions?: ReadonlyMap<Datasource, OpenTransaction>;
}

const storage = new AsyncLocalStorage<ScopeContext>();

/** Seconds an HTTP client is told to wait (Retry-After) when no connection could be had. */
const RETRY_AFTER_SECONDS = 1;

type LeaseCallback = (error: unknown, lease?: ConnectionLease) => void;

/**
 * The client of one datasource in a scope: asked for, then here (`lease`) or
 * refused (`error`). Who needs it meanwhile waits with a callback, so that the
 * first query of a request runs as soon as the client comes, in the
 * datasource's callback, without promises in between.
 */
class LeaseSlot implements LeaseRecipient {
  lease: ConnectionLease | undefined = undefined;
  private error: unknown = undefined;
  private refusedOnce = false;
  // The first waiter in a field: usually the only one.
  private waiter: LeaseCallback | undefined = undefined;
  private moreWaiters: LeaseCallback[] | undefined = undefined;

  constructor(
    readonly scope: ConnectionScope,
    readonly datasource: Datasource,
  ) {}

  wait(callback: LeaseCallback): void {
    if (this.lease !== undefined) callback(undefined, this.lease);
    else if (this.refusedOnce) callback(this.error);
    else if (this.waiter === undefined) this.waiter = callback;
    else (this.moreWaiters ??= []).push(callback);
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
    const refusal = scope.isClosed ? scope.refusalAfterEnd(this.datasource) : undefined;
    if (refusal) {
      lease.release();
      return this.flush(refusal, undefined);
    }
    this.flush(undefined, lease);
    if (scope.isClosed) lease.release();
  }

  /** The client went back with a transaction open, rolled back: after the scope's end, see ConnectionScope.refusalAfterEnd(). */
  transactionCut(): void {
    if (this.scope.isClosed) this.scope.cutTransaction(this.datasource);
  }

  refused(error: Error): void {
    this.error = error;
    this.refusedOnce = true;
    // A failed borrow leaves nothing to release; the next query may try again.
    this.scope.forget(this);
    // The 503 this error becomes tells the HTTP client when to come back.
    const response = this.scope.response;
    if (error instanceof PoolUnavailableError && response && !response.headersSent) {
      response.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
    }
    this.flush(error, undefined);
  }

  /**
   * Hands the client back before the scope ends, unless it is still on its
   * way, in a transaction (the module's or a raw `BEGIN`), out as a raw
   * client (`getClient()`: a cursor or a COPY stream may still read from it),
   * holding session state the request set (its later queries must see it),
   * or wrote on a datasource with replicas (only those track `wrote`: the
   * request's later reads must stay on the primary).
   */
  letGo(): boolean {
    const lease = this.lease;
    if (lease === undefined || lease.inTransactions || lease.wrote || lease.clientTaken || lease.changedSession || isInTransaction(lease.client)) return false;
    lease.release();
    return true;
  }

  private flush(error: unknown, lease: ConnectionLease | undefined): void {
    const { waiter, moreWaiters } = this;
    this.waiter = this.moreWaiters = undefined;
    waiter?.(error, lease);
    if (moreWaiters) for (const next of moreWaiters) next(error, lease);
  }
}

/**
 * The unit of work that owns at most one client of each datasource: a request
 * (opened as the HTTP server receives it, or by the interceptor) or a `ConnectionScope.run()` call.
 * Clients are borrowed on the first query and all handed back on `close()`.
 */
export class ConnectionScope implements ScopeContext {
  /** A scope is its own async context (see ScopeContext). */
  readonly scope: ConnectionScope = this;
  // Most scopes use one datasource: its slot sits in a field, the others (if any) in a Map made on demand.
  private first: LeaseSlot | undefined = undefined;
  private others: Map<Datasource, LeaseSlot> | undefined = undefined;
  private closed = false;
  private aborted = false;
  /** The answer is long-lived (see streamed()). */
  private answerStreamed = false;
  /** Datasources whose client went back after the end with a transaction open (rolled back). */
  private cutTransactions: Datasource[] | undefined = undefined;
  // Both let go of when the scope ends (see end()).
  private holder: ScopeHolder | undefined;
  private httpResponse: ServerResponse | undefined;

  /**
   * @internal
   * @param holder names who holds the scope (route, handler) in leak warnings.
   * @param response the HTTP response of the request the scope belongs to, if any.
   */
  constructor(holder?: ScopeHolder, response?: ServerResponse) {
    this.holder = holder;
    this.httpResponse = response;
  }

  /** @internal The HTTP response of the request the scope belongs to, while the scope is open. */
  get response(): ServerResponse | undefined {
    return this.httpResponse;
  }

  /** The scope of the running code, if any. */
  static current(): ConnectionScope | undefined {
    return storage.getStore()?.scope;
  }

  /**
   * @internal The scope of the running code if it is the one of the HTTP
   * request `response` answers: a Node response, Express' `res` (one) or
   * Fastify's `reply` (whose `raw` is one). Compared before `raw` is read:
   * looking up a property Express' `res` lacks walks its whole prototype chain.
   */
  static of(response: unknown): ConnectionScope | undefined {
    const scope = storage.getStore()?.scope;
    const own = scope?.response;
    if (own === undefined) return undefined;
    return own === response || own === (response as { raw?: unknown } | null | undefined)?.raw ? scope : undefined;
  }

  /** @internal The running code's scope and transactions, in one lookup. */
  static context(): ScopeContext | undefined {
    return storage.getStore();
  }

  /**
   * Runs `fn` in a scope of its own: its queries on each datasource share one
   * client, released when `fn` settles. For work outside a request (cron jobs,
   * queue consumers, scripts) that needs one connection throughout.
   */
  static run<T>(fn: () => T | Promise<T>): Promise<T> {
    const scope = new ConnectionScope();
    let result: T | Promise<T>;
    try {
      result = storage.run(scope, fn);
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

  /** @internal Runs `fn` with `context` (a scope, or a transaction frame in one) as the current context. */
  static enter<T>(context: ScopeContext, fn: () => T): T {
    return storage.run(context, fn);
  }

  /** @internal */
  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal Ended by `abort()`. */
  get isAborted(): boolean {
    return this.aborted;
  }

  /**
   * @internal A query on the scope's client of `datasource`, once no
   * transaction runs on that client (a query made outside them must not land
   * in one). After the scope's end, see `refuseAfterEnd()`.
   */
  query<R extends QueryResultRow>(datasource: Datasource, input: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>> {
    const slot = this.slotOf(datasource);
    const lease = slot?.lease;
    // The usual case after the first query: the client is here and free. No
    // promise or await of the module's own (each costs async hooks).
    if (lease !== undefined && !lease.isReleased && !lease.inTransactions) return lease.query<R>(input, values);
    if (this.closed) return this.refuseAfterEnd(datasource) ?? datasource.query<R>(input, values);
    // A long-lived answer holds no client between its queries: each borrows one for itself.
    if (this.answerStreamed && (slot === undefined || lease?.isReleased)) return datasource.query<R>(input, values);
    // Asked for here, not in the promise's executor: a leak warning's stack then starts at the caller.
    const arriving = slot !== undefined && !lease?.isReleased ? slot : this.borrow(datasource);
    // The first query: sent from the datasource's callback as the client comes.
    return withCallerStack(
      new Promise<QueryResult<R>>((resolve, reject) =>
        arriving.wait((error, arrived) => {
          if (!arrived) return reject(error);
          const send = (): void => arrived.send<R>(input, values, false, (failure, result) => (failure ? reject(failure) : resolve(result!)));
          if (arrived.inTransactions) arrived.outsideTransactions().then(send, reject);
          else send();
        }),
      ),
    );
  }

  /** @internal The scope's client of `datasource`, borrowed on first use. */
  lease(datasource: Datasource): Promise<ConnectionLease> {
    // A raw client asked for after the end would have nobody to hand it back: refused, quietly for an abandoned request.
    if (this.closed) {
      return this.aborted
        ? quietly(Promise.reject(new RequestAbandonedError(datasource.name)))
        : Promise.reject(new ConnectionScopeClosedError(datasource.name));
    }
    const existing = this.slotOf(datasource);
    // A client closed mid-scope (its transaction could not be rolled back) is replaced by a fresh one.
    const slot = existing !== undefined && !existing.lease?.isReleased ? existing : this.borrow(datasource);
    return slot.whenLeased();
  }

  /** @internal The scope's client of `datasource` if it already holds one. */
  heldLease(datasource: Datasource): ConnectionLease | undefined {
    const lease = this.slotOf(datasource)?.lease;
    return lease?.isReleased ? undefined : lease;
  }

  /**
   * @internal Work of `datasource` that comes after this scope ended (a
   * missing `await`, a listener, fire-and-forget writes): a rejection
   * marked handled when it is refused (see `refusalAfterEnd()`; such work is
   * often awaited by nobody, see quietly()); otherwise undefined, and
   * the work runs as it would outside any scope, on clients of its own,
   * and its call site is noted once at debug level.
   */
  refuseAfterEnd(datasource: Datasource): Promise<never> | undefined {
    const refusal = this.refusalAfterEnd(datasource);
    if (refusal) return quietly(Promise.reject(refusal));
    noteLateQuery(datasource);
    return undefined;
  }

  /**
   * @internal Why work of this ended scope on `datasource` is refused, if it
   * is: its client went back with a transaction open (a raw `BEGIN` that
   * outlived the request, or one cut by a hang-up), or the requester hung up
   * and the datasource refuses the abandoned request's work
   * (`queriesAfterHangUp: 'refuse'`).
   */
  refusalAfterEnd(datasource: Datasource): PoolError | undefined {
    // Its statements would run outside the transaction they were written for, each committed on its own.
    if (this.cutTransactions?.includes(datasource)) {
      return this.aborted ? new RequestAbandonedError(datasource.name) : new ConnectionScopeClosedError(datasource.name, 'in a transaction');
    }
    if (!this.aborted || datasource.options.queriesAfterHangUp !== 'refuse') return undefined;
    return new RequestAbandonedError(datasource.name);
  }

  /** @internal See LeaseSlot.transactionCut(). */
  cutTransaction(datasource: Datasource): void {
    (this.cutTransactions ??= []).push(datasource);
  }

  /**
   * @internal The request's answer is on its way (see
   * connection-scope.http-adapter.ts): its clients go back now, each once
   * its running query ends, rather than once the response is written. Those
   * `letGo()` keeps stay to the end. The scope stays open: a query after
   * this borrows a client again.
   */
  handBack(): void {
    if (this.first?.letGo()) this.first = undefined;
    const others = this.others;
    if (others) for (const [datasource, slot] of others) if (slot.letGo()) others.delete(datasource);
  }

  /**
   * @internal The answer is long-lived (an `@Sse()` route, a streamed body):
   * it must not pin a pooled client for its whole life. Every client the
   * scope can let go of goes back now, and from here on a query that finds
   * none held borrows a client for itself alone, as outside a request; a
   * transaction's client goes back when it ends (transactionEnded()). A raw
   * client from `getClient()`, or one in a raw `BEGIN`, stays held.
   */
  streamed(): void {
    this.answerStreamed = true;
    this.handBack();
  }

  /** @internal A transaction of this scope ended: in a long-lived answer its client goes back. */
  transactionEnded(): void {
    if (this.answerStreamed) this.handBack();
  }

  /** Ends the scope and hands every client back (once its running query ends). */
  close(): void {
    this.end(false);
  }

  /** Ends the scope because its requester is gone: running queries are cancelled. */
  abort(): void {
    this.end(true);
  }

  /** @internal Drops the slot of a borrow that failed. */
  forget(slot: LeaseSlot): void {
    if (this.first === slot) this.first = undefined;
    else if (this.others?.get(slot.datasource) === slot) this.others.delete(slot.datasource);
  }

  private slotOf(datasource: Datasource): LeaseSlot | undefined {
    const first = this.first;
    if (first !== undefined && first.datasource === datasource) return first;
    return this.others?.get(datasource);
  }

  /** A new slot for `datasource` (in place of one whose client was closed), and its client asked for. */
  private borrow(datasource: Datasource): LeaseSlot {
    const slot = new LeaseSlot(this, datasource);
    const first = this.first;
    if (this.others?.has(datasource)) this.others.set(datasource, slot);
    else if (first === undefined || first.datasource === datasource) this.first = slot;
    else (this.others ??= new Map()).set(datasource, slot);
    datasource.lend(this.holder, slot);
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
    this.first = this.others = this.holder = this.httpResponse = undefined;
    if (first?.lease) releaseAtEnd(first.lease, cancel);
    if (others) for (const slot of others.values()) if (slot.lease) releaseAtEnd(slot.lease, cancel);
  }
}

/**
 * A client goes back at its scope's end once its running query ends; a
 * transaction of the module's own (`connection.transaction()`,
 * `@Transactional()`) that work not awaited by the request still runs on it
 * finishes first, unless the requester hung up.
 */
function releaseAtEnd(lease: ConnectionLease, cancel: boolean): void {
  if (cancel || !lease.inTransactions) return lease.release(cancel);
  void lease.outsideTransactions().then(() => lease.release());
}
