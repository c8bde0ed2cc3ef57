import { DatabaseError, type PoolClient, type QueryConfig, type QueryResult, type QueryResultRow } from 'pg';
import type { ConnectionLease } from '../connection/connection-lease.js';
import type { ConnectionScope } from '../connection/connection-scope.js';
import type { QueryInput } from '../connection/query-input.js';
import { Turns } from '../connection/turns.js';
import { currentContext, runInContext, type RequestContext } from '../context/request-context.js';
import type { Datasource } from '../datasource/datasource.js';
import { TransactionAbortedError, TransactionBusyError, TransactionFinishedError } from '../pool.errors.js';
import { beginStatement, settingsOf, type TransactionSettings } from './transaction-options.js';
import type { TransactionOptions } from './transaction-options.interface.js';
import { allowRerun } from './transaction-retry.js';
import type { AfterCommitWork, CommittedHooks } from './after-commit.js';

declare module '../context/request-context.js' {
  interface RequestContext {
    /** Inside transactions: the innermost transaction of each datasource, so that every query made inside one runs in it. */
    readonly transactions?: ReadonlyMap<Datasource, OpenTransaction>;
  }
}

/** The transaction, or savepoint, that `connection.transaction()` runs its work in. */
export interface Transaction {
  /** Name of the datasource it runs on. */
  readonly datasource: string;
  /** 0 for a transaction, 1 for a savepoint in it, 2 for a savepoint in that one, and so on. */
  readonly depth: number;
  /** False once committed or rolled back. */
  readonly isActive: boolean;
  /** Runs `text`, with `values` bound to `$1`, `$2`, …, in this transaction, like `connection.query()` does anywhere in the work. */
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs a node-postgres query config (`text`, `values`, `name`, `types`) in this transaction. */
  query<R extends QueryResultRow = QueryResultRow>(config: QueryConfig<unknown[]>): Promise<QueryResult<R>>;
  /** Commits now (a savepoint: releases it) rather than when the work resolves; later queries in it throw. */
  commit(): Promise<void>;
  /** Rolls back now (a savepoint: to where it began) without throwing; the work's result is still returned. */
  rollback(): Promise<void>;
  /**
   * Runs `work` once the outermost transaction commits, never after a
   * rollback (of this savepoint or of the transaction); see `afterCommit()`.
   */
  afterCommit(work: AfterCommitWork): void;
}

export type TransactionWork<T> = (transaction: Transaction) => Promise<T>;

// SQLSTATE of any statement but a rollback sent after a statement of the transaction failed.
const IN_FAILED_TRANSACTION = '25P02';

const FAILED_STATEMENT =
  'a statement in it failed and its error was caught; to carry on after a failed statement, ' +
  'catch the error around a nested transaction (a savepoint)';
const FAILED_PARTICIPANT =
  'a @Transactional() method that joined it threw and its error was caught; ' +
  'give that method propagation "nested" to undo its work alone';

/** A transaction, or a savepoint in one, on one client: from its BEGIN (or SAVEPOINT) to its end. */
export class OpenTransaction implements Transaction {
  private finished = false;
  private rollbackOnly = false;
  // Savepoints in this transaction take turns: interleaved, rolling one back would undo the other.
  private readonly nested = new Turns();
  /** Statements of the transaction (its savepoints' included) that succeeded, counted on the outermost one. */
  private succeeded = 0;
  /** `retry` was given: the application said its work may run again (see mayRunAgainAfter()). */
  private rerunsWork = false;
  /** Hooks registered in it (and in the savepoints in it that were released), for after the outermost commit. */
  private hooks: AfterCommitWork[] | undefined = undefined;

  private constructor(
    readonly source: Datasource,
    readonly lease: ConnectionLease,
    readonly scope: ConnectionScope,
    readonly settings: TransactionSettings,
    private readonly parent?: OpenTransaction,
    /** Given the hooks once the outermost transaction has committed; its beginner runs them (see run-transaction.ts). */
    private readonly committed?: CommittedHooks,
  ) {}

  /** Begins a transaction on `lease`, runs `work` in it and ends it (see `run`); its afterCommit hooks go to `committed`. */
  static async runOn<T>(
    source: Datasource,
    lease: ConnectionLease,
    scope: ConnectionScope,
    options: TransactionOptions,
    work: TransactionWork<T>,
    committed: CommittedHooks,
  ): Promise<T> {
    const transaction = new OpenTransaction(source, lease, scope, settingsOf(options), undefined, committed);
    transaction.rerunsWork = options.retry !== undefined;
    try {
      await lease.query(beginStatement(options));
    } catch (error) {
      // Nothing ran: a connection that failed or a primary lost at BEGIN costs the application nothing to run again.
      allowRerun(error);
      throw error;
    }
    return transaction.run(work);
  }

  get datasource(): string {
    return this.source.name;
  }

  get depth(): number {
    return this.parent ? this.parent.depth + 1 : 0;
  }

  get isActive(): boolean {
    return !this.finished;
  }

  async query<R extends QueryResultRow = QueryResultRow>(input: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>> {
    this.assertActive('query');
    // While a savepoint runs in this transaction, its other queries wait, unless made from inside that savepoint.
    if (this.nested.busy && !this.encloses(currentTransaction(this.source))) {
      await this.nested.idle();
      this.assertActive('query');
    }
    const result = await this.lease.query<R>(input, values);
    this.statementSucceeded();
    return result;
  }

  async commit(): Promise<void> {
    this.end('commit');
    if (this.rollbackOnly) {
      await this.undo();
      throw new TransactionAbortedError(this.datasource, FAILED_PARTICIPANT);
    }
    if (this.savepoint) {
      await this.releaseSavepoint(this.savepoint);
      if (this.hooks) this.parent!.hooks = [...(this.parent!.hooks ?? []), ...this.hooks];
      return;
    }
    // PostgreSQL answers the COMMIT of a failed transaction with a ROLLBACK, not an error.
    const { command } = await this.lease.query('COMMIT');
    if (command === 'ROLLBACK') throw new TransactionAbortedError(this.datasource, FAILED_STATEMENT);
    if (this.hooks) this.committed?.add(this.hooks);
  }

  afterCommit(work: AfterCommitWork): void {
    this.assertActive('register an afterCommit() hook');
    (this.hooks ??= []).push(work);
  }

  async rollback(): Promise<void> {
    this.end('rollback');
    await this.undo();
  }

  /** Runs `work` in a savepoint of this transaction, once the savepoints begun before it have ended. */
  nest<T>(work: TransactionWork<T>): Promise<T> {
    this.assertActive('begin a nested transaction');
    return this.nested.take(async () => {
      this.assertActive('begin a nested transaction');
      const savepoint = new OpenTransaction(this.source, this.lease, this.scope, this.settings, this);
      await this.lease.query(`SAVEPOINT ${savepoint.savepoint}`);
      return savepoint.run(work);
    });
  }

  /** Records that a method which joined this transaction threw: it can no longer commit. */
  markRollbackOnly(): void {
    this.rollbackOnly = true;
  }

  /** The client, for `connection.getClient()` inside the transaction. */
  activeClient(): PoolClient {
    this.assertActive('get its client');
    return this.lease.rawClient();
  }

  /**
   * Runs `work` in this transaction and commits; when `work` throws, rolls
   * back and rethrows its error untouched. Savepoints `work` began and did
   * not await are waited for first.
   */
  private async run<T>(work: TransactionWork<T>): Promise<T> {
    let result: T;
    try {
      result = await enterTransaction(this, () => work(this));
    } catch (error) {
      await this.nested.idle();
      if (this.isActive) {
        // A connection that had failed already is closed, which ends its transaction on the server: no news to log.
        const broken = this.lease.isBroken;
        await this.rollback().catch((rollbackError: unknown) => {
          if (!broken) this.reportFailedRollback(rollbackError);
        });
      }
      if (this.mayRunAgainAfter()) allowRerun(error);
      throw error;
    }
    await this.nested.idle();
    if (this.isActive) await this.commit();
    return result;
  }

  private statementSucceeded(): void {
    if (this.parent) this.parent.statementSucceeded();
    else this.succeeded++;
  }

  /**
   * Whether the outermost transaction may run again, by itself, after its
   * connection failed or its server stopped being the primary: when nothing
   * of it took effect that the application could have acted on (no statement
   * succeeded, nothing ran through the raw client), or when the application
   * said its work may run again (`retry`). Its COMMIT was not sent: a failed
   * COMMIT leaves run() before this is asked, and is never run again.
   */
  private mayRunAgainAfter(): boolean {
    return this.parent === undefined && !this.lease.clientTaken && (this.succeeded === 0 || this.rerunsWork);
  }

  // Generated, never taken from input: one savepoint per depth is open at a time.
  private get savepoint(): string | undefined {
    return this.parent ? `npp_savepoint_${this.depth}` : undefined;
  }

  private end(operation: 'commit' | 'rollback'): void {
    this.assertActive(operation);
    if (this.nested.busy) throw new TransactionBusyError(this.datasource, operation);
    this.finished = true;
  }

  private assertActive(operation: string): void {
    if (this.finished) throw new TransactionFinishedError(this.datasource, operation);
  }

  private async releaseSavepoint(savepoint: string): Promise<void> {
    try {
      await this.lease.query(`RELEASE SAVEPOINT ${savepoint}`);
    } catch (error) {
      if (!(error instanceof DatabaseError && error.code === IN_FAILED_TRANSACTION)) throw error;
      await this.undo();
      throw new TransactionAbortedError(this.datasource, FAILED_STATEMENT);
    }
  }

  private async undo(): Promise<void> {
    const savepoint = this.savepoint;
    try {
      await this.lease.query(savepoint ? `ROLLBACK TO SAVEPOINT ${savepoint}; RELEASE SAVEPOINT ${savepoint}` : 'ROLLBACK');
    } catch (error) {
      // The transaction may still be open on the server, holding its locks: the connection must not be reused.
      // (A lease already released by its scope rolls back on its own as it is released.)
      if (!this.lease.isReleased) this.lease.destroy(error as Error);
      throw error;
    }
  }

  private reportFailedRollback(error: unknown): void {
    const reason = error instanceof Error ? error.message : String(error);
    this.source.warn(`rolling back a failed transaction failed too (${reason}); its connection is not reused`);
  }

  /** True when `transaction` is a savepoint nested, at any depth, in this transaction. */
  private encloses(transaction: OpenTransaction | undefined): boolean {
    for (let inner = transaction; inner; inner = inner.parent) if (inner.parent === this) return true;
    return false;
  }
}

/** The innermost transaction of `datasource` the running code is in, if any. */
export function currentTransaction(datasource: Datasource): OpenTransaction | undefined {
  // A scope opened inside a transaction (ConnectionScope.run) is a context of
  // its own, without the transactions: it has clients, hence transactions, of its own.
  return currentContext()?.transactions?.get(datasource);
}

/** Runs `fn` with `transaction` as the current transaction of its datasource. */
function enterTransaction<T>(transaction: OpenTransaction, fn: () => T): T {
  const context = currentContext();
  // Transactions of another scope (the code left it since) are not this scope's.
  const transactions = new Map(context?.scope === transaction.scope ? context.transactions : undefined);
  transactions.set(transaction.source, transaction);
  const frame: RequestContext = { scope: transaction.scope, transactions };
  return runInContext(frame, fn);
}

/** Transactions on one client of a scope take turns; the scope's other queries wait for them. */
export function transactionTurns(lease: ConnectionLease): Turns {
  return (lease.transactionTurns ??= new Turns());
}
