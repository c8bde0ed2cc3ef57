import { DatabaseError, type PoolClient, type QueryResult } from 'pg';
import { ConnectionScope } from '../connection/connection-scope.js';
import { whenReadyForQuery } from '../connection/pg-client-state.js';
import { memberOf } from '../connection/raw-client.js';
import { PoolError } from '../pool.errors.js';

type Callback = (error: Error | null, result?: QueryResult | QueryResult[]) => void;
type Task = { borrower: Borrower; run: (done: () => void) => void; refuse: (error: Error) => void };

// A statement outside a transaction runs alone on the lane: one name serves them all.
const STATEMENT_SAVEPOINT = 'npp_test_statement';
const OPENS = /^\s*(BEGIN|START\s+TRANSACTION)\b[^;]*;?\s*$/i;
const COMMITS = /^\s*(COMMIT|END)\b\s*;?\s*$/i;
const ROLLS_BACK = /^\s*(ROLLBACK|ABORT)\b\s*;?\s*$/i;
// SQLSTATE in_failed_sql_transaction: what RELEASE SAVEPOINT answers after a statement in it failed.
const IN_FAILED_TRANSACTION = '25P02';

function undo(savepoint: string): string {
  return `ROLLBACK TO SAVEPOINT ${savepoint}; RELEASE SAVEPOINT ${savepoint}`;
}

function ended(): PoolError {
  return new PoolError('the test transaction has ended: its connection runs no more statements');
}

/**
 * One connection, inside a transaction the test rolls back, lent to every
 * borrower of a pool as if each had a client of its own: each gets a
 * `Borrower`, whose statements the lane runs one at a time. What a borrower
 * sees as a transaction is a savepoint of the test's, and while it runs the
 * lane runs that borrower's statements alone; a statement outside one runs
 * in a savepoint of its own, so that its failure does not abort the test's
 * transaction (as it would not abort anything on a connection of its own).
 */
export class SharedConnection {
  private readonly queue: Task[] = [];
  private busy = false;
  /**
   * Borrowers whose transactions run, outermost first: the lane runs only
   * the statements of borrowers of their scopes (a `requiresNew` transaction
   * begun inside one is of the same scope), so that another request's
   * statements do not land between a savepoint and its end.
   */
  private readonly owners: Borrower[] = [];
  private readonly whenIdle: Array<() => void> = [];
  private ended = false;
  private borrowers = 0;

  constructor(readonly client: PoolClient) {}

  /** A client for one borrower (see Borrower), of the connection scope it is borrowed in. */
  borrow(): PoolClient {
    return new Borrower(this, ConnectionScope.current(), ++this.borrowers).client;
  }

  /** Runs `run` once the lane is free and no transaction of another scope runs; `refuse` if the test's transaction ends first. */
  enqueue(borrower: Borrower, run: (done: () => void) => void, refuse: (error: Error) => void): void {
    if (this.ended) return refuse(ended());
    this.queue.push({ borrower, run, refuse });
    this.next();
  }

  /** A transaction of `borrower` began, or ended. */
  owns(borrower: Borrower, owning: boolean): void {
    if (owning) this.owners.push(borrower);
    else this.owners.splice(this.owners.lastIndexOf(borrower), 1);
  }

  /**
   * Waits for the statement running now, then refuses those still queued
   * and any later: work the test did not await must not wait for a
   * transaction nobody will end, nor run after the rollback.
   */
  async end(): Promise<void> {
    this.ended = true;
    if (this.busy) await new Promise<void>((resolve) => this.whenIdle.push(resolve));
    for (const task of this.queue.splice(0)) task.refuse(ended());
  }

  private next(): void {
    if (this.busy) return;
    if (this.ended) {
      for (const resolve of this.whenIdle.splice(0)) resolve();
      return;
    }
    const index = this.queue.findIndex((task) => this.mayRun(task.borrower));
    if (index === -1) return;
    const [task] = this.queue.splice(index, 1);
    this.busy = true;
    task.run(() => {
      this.busy = false;
      this.next();
    });
  }

  private mayRun(borrower: Borrower): boolean {
    const outermost = this.owners[0];
    if (outermost === undefined || outermost === borrower) return true;
    return borrower.scope !== undefined && borrower.scope === outermost.scope;
  }
}

/**
 * What one borrower of the shared connection holds: a `PoolClient` in every
 * respect (its reads go to the real client) but for `query` (through the
 * lane, its transactions as savepoints), `release` (the connection stays
 * with the test) and the transaction status it reports (its own).
 */
class Borrower {
  readonly client: PoolClient;
  private inTransaction = false;
  private failed = false;
  // Properties set on the client by its users (the module's lease marks the clients it holds): this borrower's own.
  private readonly own = new Map<PropertyKey, unknown>();

  /** Its transactions' savepoint: named after it, as a `requiresNew` one may begin inside another's. */
  private readonly savepoint: string;

  constructor(
    private readonly lane: SharedConnection,
    /** The connection scope it was borrowed in (see SharedConnection.mayRun()). */
    readonly scope: ConnectionScope | undefined,
    id: number,
  ) {
    this.savepoint = `npp_test_transaction_${id}`;
    const target = lane.client;
    const methods: Partial<Record<PropertyKey, unknown>> = {
      query: this.query.bind(this),
      release: () => undefined,
      getTransactionStatus: () => (this.inTransaction ? (this.failed ? 'E' : 'T') : 'I'),
    };
    this.client = new Proxy(target, {
      get: (real, property) => {
        if (Object.hasOwn(methods, property)) return methods[property];
        if (this.own.has(property)) return this.own.get(property);
        return memberOf(real, property);
      },
      set: (_real, property, value) => {
        this.own.set(property, value);
        return true;
      },
    });
  }

  /** pg's query(text | config | submittable, values?, callback?): a promise unless a callback is given. */
  private query(input: unknown, values?: unknown, callback?: unknown): unknown {
    if (typeof (input as { submit?: unknown } | null)?.submit === 'function') {
      // A cursor or a stream reports its end through events the lane cannot see: it runs in pg's own queue.
      return this.lane.client.query(input as never);
    }
    const done = (typeof values === 'function' ? values : callback) as Callback | undefined;
    const params = typeof values === 'function' ? undefined : values;
    const promise = new Promise<QueryResult | QueryResult[]>((resolve, reject) => {
      this.lane.enqueue(
        this,
        (free) =>
          this.run(input, params, (error, result) => {
            free();
            if (error) reject(error);
            else resolve(result!);
          }),
        reject,
      );
    });
    if (!done) return promise;
    promise.then(
      (result) => done(null, result),
      (error: Error) => done(error),
    );
    return undefined;
  }

  private run(input: unknown, values: unknown, callback: Callback): void {
    const text = typeof input === 'string' ? input : (input as { text?: string }).text ?? '';
    if (!this.inTransaction && OPENS.test(text)) {
      // Isolation level and access mode cannot be set on a savepoint: the test's transaction's apply.
      return this.send(`SAVEPOINT ${this.savepoint}`, undefined, (error) => {
        if (!error) this.began();
        callback(error, error ? undefined : ({ command: 'BEGIN', rowCount: null, rows: [], fields: [] } as unknown as QueryResult));
      });
    }
    if (this.inTransaction && (COMMITS.test(text) || ROLLS_BACK.test(text))) return this.end(COMMITS.test(text) && !this.failed, callback);
    if (this.inTransaction) {
      return this.send(input, values, (error, result) => {
        if (error) this.failed = true;
        callback(error, result);
      });
    }
    this.send(`SAVEPOINT ${STATEMENT_SAVEPOINT}`, undefined, (error) => {
      if (error) return callback(error);
      this.send(input, values, (failure, result) =>
        this.send(failure ? undo(STATEMENT_SAVEPOINT) : `RELEASE SAVEPOINT ${STATEMENT_SAVEPOINT}`, undefined, (ended) => callback(failure ?? ended, result)),
      );
    });
  }

  private began(): void {
    this.inTransaction = true;
    this.failed = false;
    this.lane.owns(this, true);
  }

  /** COMMIT (a release of the savepoint) or ROLLBACK (back to it); a commit of a failed one answers ROLLBACK, as PostgreSQL does. */
  private end(commit: boolean, callback: Callback): void {
    const finish = (error: Error | null, command: 'COMMIT' | 'ROLLBACK'): void => {
      this.inTransaction = this.failed = false;
      this.lane.owns(this, false);
      callback(error, error ? undefined : ({ command, rowCount: null, rows: [], fields: [] } as unknown as QueryResult));
    };
    if (!commit) return this.send(undo(this.savepoint), undefined, (error) => finish(error, 'ROLLBACK'));
    this.send(`RELEASE SAVEPOINT ${this.savepoint}`, undefined, (error) => {
      if (!(error instanceof DatabaseError && error.code === IN_FAILED_TRANSACTION)) return finish(error, 'COMMIT');
      this.send(undo(this.savepoint), undefined, (undone) => finish(undone, 'ROLLBACK'));
    });
  }

  /** One statement on the real client; a failure is reported once its ReadyForQuery came, so that the next may be sent. */
  private send(input: unknown, values: unknown, callback: Callback): void {
    const client = this.lane.client;
    client.query(input as string, values as unknown[], (error: Error | null, result: QueryResult) => {
      if (error) whenReadyForQuery(client, () => callback(error, result));
      else callback(null, result);
    });
  }
}
