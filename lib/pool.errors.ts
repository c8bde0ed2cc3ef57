import { IntrinsicException } from '@nestjs/common';

/**
 * Every error the module throws on purpose is a `PoolError`, so callers can
 * tell them from database errors with one `instanceof`. Messages name the
 * datasource and what was wrong, never a password or a full connection string.
 */
export class PoolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }

  /** `instanceof PoolError` is also true of the quiet ones, which extend Nest's IntrinsicException instead (see QuietPoolError). */
  static override [Symbol.hasInstance](value: unknown): boolean {
    const ownInstance = Function.prototype[Symbol.hasInstance].call(this, value) as boolean;
    return ownInstance || (this === PoolError && value instanceof QuietPoolError);
  }
}

/**
 * A `PoolError` whose answer says all there is, so Nest's default exception
 * filter sends it without logging a stack per request: a 503 while the
 * datasource logs its change of state once, a 499 for a client that left.
 * It extends Nest's `IntrinsicException` for that; a filter of the
 * application's own still sees every one.
 */
export class QuietPoolError extends IntrinsicException {
  constructor(message: string, options?: { cause: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An option passed to `forRoot`/`forRootAsync` is out of range or inconsistent. */
export class InvalidPoolOptionsError extends PoolError {
  constructor(
    /** Name of the datasource whose options were refused (as given, when the name itself is what is wrong). */
    readonly datasource: string,
    /** The option at fault, e.g. `'max'` or `'maxLifetimeJitter'`. */
    readonly option: string,
    reason: string,
  ) {
    super(`Invalid option "${option}" for datasource "${datasource}": ${reason}`);
  }
}

/** Two `forRoot`/`forRootAsync` calls in one application used the same name. */
export class DuplicateDatasourceError extends PoolError {
  constructor(
    /** The name registered twice. */
    readonly datasource: string,
  ) {
    super(
      `Datasource "${datasource}" is registered twice; give each PoolModule.forRoot() its own "name"`,
    );
  }
}

/** Code asked for a datasource name that no `forRoot`/`forRootAsync` registered. */
export class DatasourceNotFoundError extends PoolError {
  constructor(
    /** The name asked for. */
    readonly datasource: string,
    /** Names of the datasources the application does have; empty when it has none. */
    readonly known: readonly string[],
  ) {
    super(
      `No datasource named "${datasource}" is registered (registered: ${
        known.length ? known.map((n) => `"${n}"`).join(', ') : 'none'
      }); add PoolModule.forRoot({ name: "${datasource}", ... })`,
    );
  }
}

/**
 * No connection could be had for now: the request may succeed if retried
 * later. Shaped like an http-errors error (`statusCode` 503, `expose`
 * false), so Nest's default exception filter answers
 * `503 Service Unavailable` with that status text alone, on Express and
 * Fastify; within an HTTP request the module also sets `Retry-After`. The
 * message, with the server and the driver's reason, stays in the error and in
 * the datasource's log line.
 */
export class PoolUnavailableError extends QuietPoolError {
  /** 503 Service Unavailable: the request itself was fine and may succeed if retried. Nest's default filter answers with it. */
  readonly statusCode = 503;
  /** Same as `statusCode`, as http-errors sets both; Nest's default filter takes the error for an HTTP one only when they agree. */
  readonly status = 503;
  /**
   * False, as http-errors sets it for every 5xx: Nest's default filter then
   * sends the status text, not the message, which may name the server
   * (`user@host:port/database`) and the driver's reason. An exception filter
   * of the application's own can show more (see the troubleshooting page).
   */
  readonly expose = false;
}

/**
 * The server did not accept a new connection: at startup after every retry,
 * or when a client was needed and none could be opened in time.
 */
export class DatabaseUnreachableError extends PoolUnavailableError {
  constructor(
    /** Name of the datasource (for a replica, e.g. `default (replica 1)`). */
    readonly datasource: string,
    /** Where it tried to connect, as `user@host:port/database`: never the password. */
    readonly target: string,
    /** The driver's message with any password removed, or `no connection within N ms` for a timeout. */
    readonly reason: string,
    /**
     * The `code` of the underlying error: a Node system error (`ECONNREFUSED`,
     * `ENOTFOUND`, …) or a SQLSTATE (`28P01`, `3D000`, …). Undefined when it
     * had none, as for a timeout.
     */
    readonly code: string | undefined,
    /** Connection attempts made: `retryAttempts + 1` at startup, 1 for a client needed later. */
    readonly attempts = 1,
  ) {
    super(`Cannot connect datasource "${datasource}" to ${target} after ${attempts} attempt(s): ${reason}`);
  }
}

/**
 * The server refused the datasource's credentials: SQLSTATE `28P01` (wrong
 * password, e.g. a rotated one the `password` function has not caught up
 * with) or `28000` (a role that may not log in, a `pg_hba.conf` rule). Its
 * `reason` starts with `authentication failed`; like every error of the
 * module it never holds the password.
 */
export class AuthenticationFailedError extends DatabaseUnreachableError {
  constructor(datasource: string, target: string, reason: string, code: string | undefined, attempts = 1) {
    super(datasource, target, `authentication failed: ${reason}`, code, attempts);
  }
}

/** Why one host was not used for a connection: it did not answer, or its server is not what was asked for. */
export interface HostRefusal {
  /** `host:port`. */
  readonly host: string;
  /** The driver's reason (no password in it), or what the server is (`a hot standby`, `read-only`). */
  readonly reason: string;
}

/** No host of a multi-host datasource answered as `targetSessionAttrs` asks (for now: a failover may be under way). */
export class NoMatchingHostError extends PoolUnavailableError {
  constructor(
    /** Name of the datasource. */
    readonly datasource: string,
    /** The `targetSessionAttrs` asked for. */
    readonly targetSessionAttrs: string,
    /** Each host tried, in the order tried, and why it was not used. */
    readonly refusals: readonly HostRefusal[],
  ) {
    super(
      `Datasource "${datasource}" found no host matching targetSessionAttrs '${targetSessionAttrs}': ` +
        refusals.map((refusal) => `${refusal.host} (${refusal.reason})`).join(', '),
    );
  }
}

/**
 * A statement failed with SQLSTATE 25006 (read-only transaction) on a
 * datasource that asks for a writable server: its host is no longer the
 * primary. Its connections were closed and the next connection looks for
 * the new primary; the request may succeed if retried (a transaction of the
 * module is retried once by itself). The server's error is the `cause`.
 */
export class PrimaryLostError extends PoolUnavailableError {
  constructor(
    /** Name of the datasource. */
    readonly datasource: string,
    /** `host:port` of the server that refused the write. */
    readonly host: string,
    options: { cause: unknown },
  ) {
    super(`Datasource "${datasource}": ${host} no longer accepts writes (SQLSTATE 25006); its connections were closed`, options);
  }
}

/** Counts of a pool at the moment an error was raised. */
export interface PoolCounts {
  /** Open connections, those still connecting included. */
  total: number;
  /** Open connections not checked out. */
  idle: number;
  /** Requests queued for a connection. */
  waiting: number;
  /** The pool's `max` connections. */
  max: number;
}

/** Every client was busy for the whole acquire timeout (`connectionTimeoutMillis`). */
export class PoolExhaustedError extends PoolUnavailableError {
  constructor(
    /** Name of the datasource. */
    readonly datasource: string,
    /** How long the request waited before giving up, in milliseconds (rounded). */
    readonly waitedMillis: number,
    /** The pool's counts when the request gave up. */
    readonly counts: PoolCounts,
  ) {
    super(
      `Datasource "${datasource}" is exhausted: all ${counts.max} connections stayed busy for ${waitedMillis} ms ` +
        `(${counts.total} open, ${counts.idle} idle, ${counts.waiting} waiting)`,
    );
  }
}

/** The wait queue was at `maxWaitingClients`: the request was refused without waiting. */
export class PoolQueueFullError extends PoolUnavailableError {
  constructor(
    /** Name of the datasource. */
    readonly datasource: string,
    /** The pool's counts when the request was refused; `waiting` had reached `maxWaitingClients`. */
    readonly counts: PoolCounts,
  ) {
    super(
      `Datasource "${datasource}" refused a connection request: ${counts.waiting} requests already wait ` +
        `for one of its ${counts.max} connections`,
    );
  }
}

/**
 * A query failed for a reason other than the server's answer (connection
 * lost, the server shutting down or terminating the session, query read
 * timeout): its connection was closed, not reused. Answered 503 with
 * `Retry-After`, as the request may succeed on another connection; a
 * transaction of the module whose connection failed before any of its
 * statements succeeded is run again once by itself. A write whose
 * connection failed after it was sent may or may not have been committed.
 */
export class ConnectionFailedError extends PoolUnavailableError {
  constructor(
    /** Name of the datasource. */
    readonly datasource: string,
    /** Message of the failure; the original error is the `cause`. */
    readonly reason: string,
    options?: { cause: unknown },
  ) {
    super(`Connection of datasource "${datasource}" failed and was closed: ${reason}`, options);
  }
}

/**
 * Work came after its connection scope had ended that cannot run safely
 * there: a raw client from `getClient()` (nothing would hand it back), or a
 * statement of a transaction opened with a raw `BEGIN` that the end cut
 * (rolled back). Other queries after the end run on clients of their own.
 */
export class ConnectionScopeClosedError extends PoolError {
  constructor(
    /** Name of the datasource the refused work was for. */
    readonly datasource: string,
    /**
     * 'in a transaction': the end rolled back a transaction the work belonged to;
     * 'with request settings': the request set settings (`setRequestSettings()`) the work would run without.
     */
    readonly state?: 'in a transaction' | 'with request settings',
  ) {
    super(
      state === 'in a transaction'
        ? `The connection scope for datasource "${datasource}" ended with a transaction open on its connection, which ` +
            'was rolled back; the statements that came after it would run outside it, and are refused'
        : state === 'with request settings'
          ? `The connection scope for datasource "${datasource}" has ended, and the work that came after it would run ` +
              'without the settings its request gave (setRequestSettings()); await the work, or run it in ' +
              'ConnectionScope.run() called inside the request, which takes the settings along'
          : `The connection scope for datasource "${datasource}" has ended (request finished), so a raw client from ` +
            'getClient() would have nobody to release it; work that outlives its request must open a scope of its own ' +
            'with ConnectionScope.run()',
    );
  }
}

/**
 * Work the module cancelled or refused on purpose: its requester hung up
 * (RequestAbandonedError) or ran out of time (DeadlineExceededError). Shaped
 * like an http-errors error, which Nest's default filter answers with its
 * status (if the response is still open) without logging it. A promise the
 * module rejects with one never counts as an unhandled rejection (it often
 * lands in work nobody awaits any more); a promise the application makes of
 * it, such as an async function's, is the application's to handle.
 */
export abstract class WorkCancelledError extends QuietPoolError {
  /** The HTTP status Nest's default filter answers with. */
  readonly statusCode: number;
  /** Same as `statusCode`, as http-errors sets both; Nest's default filter takes the error for an HTTP one only when they agree. */
  readonly status: number;
  /** Whether the HTTP client gets the message (a 4xx) or the status text alone (a 5xx, as http-errors does). */
  readonly expose: boolean;

  protected constructor(
    /** Name of the datasource whose work was cancelled or refused. */
    readonly datasource: string,
    status: number,
    message: string,
    options?: { cause: unknown },
  ) {
    super(message, options);
    this.statusCode = this.status = status;
    this.expose = status < 500;
  }
}

/**
 * The HTTP client of the request hung up: the query its handler was running
 * was cancelled (`cause` is the server's 57014), or work asked for after the
 * hang-up was refused (`queriesAfterHangUp: 'refuse'`). Answered 499, nginx's
 * "client closed request", with its message, which holds no secret.
 */
export class RequestAbandonedError extends WorkCancelledError {
  constructor(datasource: string, options?: { cause: unknown }) {
    const what = options ? 'cancelled' : 'refused';
    super(datasource, 499, `The client of this request went away: its work on datasource "${datasource}" was ${what}`, options);
  }
}

/**
 * The request's deadline passed (`requestDeadlineMillis`, `@RequestDeadline()`
 * or `setRequestDeadline()`): the query its handler was running was cancelled
 * on the server (`cause` is the server's 57014) and its transaction rolled
 * back, or later work of the request was refused without borrowing a client.
 * Answered 504 Gateway Timeout, with the status text alone.
 */
export class DeadlineExceededError extends WorkCancelledError {
  constructor(datasource: string, options?: { cause: unknown }) {
    const what = options ? 'cancelled' : 'refused';
    super(datasource, 504, `The deadline of this request passed: its work on datasource "${datasource}" was ${what}`, options);
  }
}

/** A deadline given to `@RequestDeadline()` or `setRequestDeadline()` is not a positive number of milliseconds. */
export class InvalidDeadlineError extends PoolError {
  constructor(
    /** What was given instead of a number of milliseconds. */
    readonly value: unknown,
  ) {
    super(`A request deadline must be a positive, finite number of milliseconds, got ${String(value)}`);
  }
}

/**
 * A query on a raw client (`getClient()`) after the application released
 * it with `release()` or `end()`, or after its request ended: the
 * connection may already serve someone else. Ask `getClient()` again.
 */
export class ClientReleasedError extends PoolError {
  constructor(
    /** Name of the datasource the client belonged to. */
    readonly datasource: string,
  ) {
    super(
      `A raw client of datasource "${datasource}" was used after it was released (release(), end() or the end of ` +
        'its request); call getClient() again for the client of the current request',
    );
  }
}

/**
 * `setRequestSettings()` was given what PostgreSQL would not take (a name
 * that is no setting's, a value that is no string, an empty role), or was
 * called inside a transaction, where the settings would end with it.
 */
export class InvalidRequestSettingsError extends PoolError {
  constructor(
    /** What was wrong, naming the setting. */
    readonly reason: string,
  ) {
    super(`Invalid request settings: ${reason}`);
  }
}

/**
 * The server refused the request's settings (`setRequestSettings()`): a
 * role that does not exist or that the connection's user is not a member
 * of, a value the setting rejects. The request's queries on that
 * connection fail with it (none may run without its settings), and the
 * connection is closed.
 */
export class RequestSettingsFailedError extends PoolError {
  constructor(
    /** Name of the datasource whose server refused them. */
    readonly datasource: string,
    options: { cause: Error },
  ) {
    super(`The request's settings could not be applied on datasource "${datasource}": ${options.cause.message}`);
    this.cause = options.cause;
  }
}

/** `getClient()` was called where no connection scope is open, so nothing would release the client. */
export class NoConnectionScopeError extends PoolError {
  constructor(
    /** Name of the datasource `getClient()` was called on; undefined for `setRequestDeadline()` and `setRequestSettings()`. */
    readonly datasource: string | undefined,
    /** What was called. */
    operation = 'getClient()',
  ) {
    super(
      `${operation}${datasource === undefined ? '' : ` on datasource "${datasource}"`} needs a connection scope: call it inside a request ` +
        'or inside ConnectionScope.run()',
    );
  }
}

/** The pool is closing or closed (application shutdown): no new client is handed out. */
export class PoolClosedError extends PoolUnavailableError {
  constructor(
    /** Name of the datasource that is shutting down. */
    readonly datasource: string,
  ) {
    super(`Datasource "${datasource}" is shutting down and hands out no new connections`);
  }
}

/** A statement needs session state that a transaction-mode pooler (`transactionPooling`) cannot keep. */
export class SessionStateError extends PoolError {
  constructor(
    /** Name of the datasource, which has `transactionPooling` on. */
    readonly datasource: string,
    /**
     * The refused statement, on one line and cut to 60 characters, or
     * `named prepared statement "<name>"` for a query config with a `name`.
     */
    readonly statement: string,
    reason: string,
  ) {
    super(`Datasource "${datasource}" runs behind a transaction-mode pooler and refuses "${statement}": ${reason}`);
  }
}

/** A transaction option (isolation level, propagation, retry, …) is unknown or out of range. */
export class InvalidTransactionOptionsError extends PoolError {
  constructor(
    /** The option at fault, e.g. `'isolationLevel'`. */
    readonly option: string,
    reason: string,
  ) {
    super(`Invalid transaction option "${option}": ${reason}`);
  }
}

/** `commit()`, `rollback()` or a query on a transaction that has already been committed or rolled back. */
export class TransactionFinishedError extends PoolError {
  constructor(
    /** Name of the datasource the transaction ran on. */
    readonly datasource: string,
    /** What was attempted, in words: `'commit'`, `'rollback'`, `'query'`, `'begin a nested transaction'`, `'get its client'`. */
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
    /** Name of the datasource the transaction runs on. */
    readonly datasource: string,
    /** `'commit'` or `'rollback'`. */
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
    /** Name of the datasource the transaction ran on. */
    readonly datasource: string,
    reason: string,
  ) {
    super(`The transaction on datasource "${datasource}" was rolled back, not committed: ${reason}`);
  }
}

/** `@Transactional({ propagation: 'never' })` was called while a transaction is running. */
export class TransactionPropagationError extends PoolError {
  constructor(
    /** Name of the datasource whose transaction was running. */
    readonly datasource: string,
    /** The decorated method, as `ClassName.methodName`. */
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
    /** Name of the datasource the running transaction is on. */
    readonly datasource: string,
    /** The option the running transaction cannot honour: `'isolationLevel'` or `'readOnly'`. */
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
    /** The decorated method, as `ClassName.methodName`. */
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
    /** The decorated method, as `ClassName.methodName`. */
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
