/**
 * Every error the module throws on purpose extends `PoolError`, so callers can
 * tell them from database errors with one `instanceof`. Messages name the
 * datasource and what was wrong, never a password or a full connection string.
 */
export class PoolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** An option passed to `forRoot`/`forRootAsync` is out of range or inconsistent. */
export class InvalidPoolOptionsError extends PoolError {
  constructor(
    readonly datasource: string,
    readonly option: string,
    reason: string,
  ) {
    super(`Invalid option "${option}" for datasource "${datasource}": ${reason}`);
  }
}

/** Two `forRoot`/`forRootAsync` calls in one application used the same name. */
export class DuplicateDatasourceError extends PoolError {
  constructor(readonly datasource: string) {
    super(
      `Datasource "${datasource}" is registered twice; give each PoolModule.forRoot() its own "name"`,
    );
  }
}

/** Code asked for a datasource name that no `forRoot`/`forRootAsync` registered. */
export class DatasourceNotFoundError extends PoolError {
  constructor(
    readonly datasource: string,
    readonly known: readonly string[],
  ) {
    super(
      `No datasource named "${datasource}" is registered (registered: ${
        known.length ? known.map((n) => `"${n}"`).join(', ') : 'none'
      }); add PoolModule.forRoot({ name: "${datasource}", ... })`,
    );
  }
}

/** The database could not be reached at startup, after every retry. */
export class DatabaseUnreachableError extends PoolError {
  constructor(
    readonly datasource: string,
    readonly target: string,
    readonly reason: string,
    readonly code: string | undefined,
    readonly attempts: number,
  ) {
    super(
      `Cannot connect datasource "${datasource}" to ${target} after ${attempts} attempt(s): ${reason}`,
    );
  }
}

/** A query or `getClient()` came after its connection scope had ended. */
export class ConnectionScopeClosedError extends PoolError {
  constructor(readonly datasource: string) {
    super(
      `The connection scope for datasource "${datasource}" has ended (request finished or aborted); ` +
        'work that outlives its request must open a scope of its own with ConnectionScope.run()',
    );
  }
}

/** `getClient()` was called where no connection scope is open, so nothing would release the client. */
export class NoConnectionScopeError extends PoolError {
  constructor(readonly datasource: string) {
    super(
      `getClient() on datasource "${datasource}" needs a connection scope: call it inside a request ` +
        'or inside ConnectionScope.run()',
    );
  }
}

/** The pool is closing or closed (application shutdown): no new client is handed out. */
export class PoolClosedError extends PoolError {
  constructor(readonly datasource: string) {
    super(`Datasource "${datasource}" is shutting down and hands out no new connections`);
  }
}

/** A transaction option (isolation level, propagation, retry, …) is unknown or out of range. */
export class InvalidTransactionOptionsError extends PoolError {
  constructor(
    readonly option: string,
    reason: string,
  ) {
    super(`Invalid transaction option "${option}": ${reason}`);
  }
}

/** `commit()`, `rollback()` or a query on a transaction that has already been committed or rolled back. */
export class TransactionFinishedError extends PoolError {
  constructor(
    readonly datasource: string,
    readonly operation: string,
  ) {
    super(
      `Cannot ${operation}: the transaction on datasource "${datasource}" has already been committed or rolled back; ` +
        'work that outlives its transaction must start a transaction of its own',
    );
  }
}

/** `commit()` or `rollback()` while a nested transaction (savepoint) of it is still running. */
export class TransactionBusyError extends PoolError {
  constructor(
    readonly datasource: string,
    readonly operation: string,
  ) {
    super(
      `Cannot ${operation} the transaction on datasource "${datasource}" while a nested transaction in it is still running; ` +
        'await the nested transaction first',
    );
  }
}

/**
 * The work of a transaction resolved, yet the transaction could only be
 * rolled back: a statement in it failed, or a method that joined it threw,
 * and the error was caught.
 */
export class TransactionAbortedError extends PoolError {
  constructor(
    readonly datasource: string,
    reason: string,
  ) {
    super(`The transaction on datasource "${datasource}" was rolled back, not committed: ${reason}`);
  }
}

/** `@Transactional({ propagation: 'never' })` was called while a transaction is running. */
export class TransactionPropagationError extends PoolError {
  constructor(
    readonly datasource: string,
    readonly method: string,
  ) {
    super(
      `${method} has propagation "never" but was called inside a transaction on datasource "${datasource}"`,
    );
  }
}

/** A call that joins or nests in a running transaction asked for a guarantee that transaction does not give. */
export class TransactionOptionsConflictError extends PoolError {
  constructor(
    readonly datasource: string,
    readonly option: string,
    reason: string,
  ) {
    super(`Cannot join the transaction running on datasource "${datasource}": ${reason}`);
  }
}

/** `@Transactional({ name })` names a datasource that no `forRoot`/`forRootAsync` registered (thrown at bootstrap). */
export class TransactionalDatasourceNotFoundError extends DatasourceNotFoundError {
  constructor(
    datasource: string,
    known: readonly string[],
    readonly method: string,
  ) {
    super(datasource, known);
    this.message = `@Transactional() on ${method}: ${this.message}`;
  }
}

/**
 * A `@Transactional()` method ran on an object that no running application
 * of this module created, so which datasources it means cannot be told.
 */
export class TransactionalNotBoundError extends PoolError {
  constructor(
    readonly method: string,
    ambiguous: boolean,
  ) {
    super(
      ambiguous
        ? `@Transactional() method ${method} belongs to a request-scoped or transient provider of more than one ` +
            'running application, so its datasource is ambiguous; use connection.transaction() in it instead'
        : `@Transactional() method ${method} was called on an object no running application importing PoolModule ` +
            'created (only its providers and controllers are known); use connection.transaction() there instead',
    );
  }
}
