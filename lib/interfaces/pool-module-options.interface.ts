import type { PoolConfig } from 'pg';

/**
 * Options of one datasource: everything node-postgres' `PoolConfig` takes
 * (connection string or host/port/user/password/database, ssl, max, min,
 * idleTimeoutMillis, connectionTimeoutMillis, maxLifetimeSeconds,
 * statement_timeout, application_name, …) plus the module's own.
 */
export interface PoolModuleOptions extends PoolConfig {
  /** Datasource name, used by `@InjectPool(name)` and `@InjectConnection(name)`. Default `'default'`. */
  name?: string;
  /**
   * The password, or a function (sync or async) called for every new
   * connection that returns it: a rotating credential such as an IAM token
   * or a Vault lease. The module hands it to node-postgres as given, never
   * calls it itself and never logs what it returns.
   */
  password?: string | (() => string | Promise<string>);
  /**
   * The server, or several as libpq takes them: a comma-separated list,
   * each entry with its own port or `port`'s (`'db1:5432,db2:5433'`,
   * `'db1,db2'`, `'[::1]:5432'` for IPv6). With several, each new
   * connection tries them in order (see `loadBalanceHosts`) and keeps the
   * first that `targetSessionAttrs` accepts, as libpq does. A multi-host
   * `connectionString` (`postgres://u:p@db1:5432,db2:5433/app`) does the same.
   * (A string rather than an array, so that these options stay assignable to
   * node-postgres' own `PoolConfig`.)
   */
  host?: string;
  /**
   * What a connection's server must be, as libpq's `target_session_attrs`
   * (or the connection string's parameter of that name): `'any'` (the
   * default), `'read-write'` (not a hot standby, `default_transaction_read_only`
   * off), `'read-only'` (either of those), `'primary'` (not a hot standby),
   * `'standby'` (a hot standby), `'prefer-standby'` (a standby if any
   * answers, else any). A connection that does not match is closed, and
   * the connect fails with `NoMatchingHostError` when no host matches.
   */
  targetSessionAttrs?: TargetSessionAttrs;
  /**
   * libpq's `load_balance_hosts`: `'disable'` (the default) tries the hosts
   * in order; `'random'` spreads connections over every host that matches.
   */
  loadBalanceHosts?: LoadBalanceHosts;
  /** How many more times the startup check (a connection that reads the server's connection budget) is tried after a failure. Default 3. */
  retryAttempts?: number;
  /**
   * Milliseconds between two startup attempts. Default 1000. With
   * `bootWithoutDatabase`, also the first wait of the background retries.
   */
  retryDelay?: number;
  /**
   * When the startup check still fails after its `retryAttempts`, start the
   * application anyway instead of failing the bootstrap (HikariCP's
   * `initializationFailTimeout < 0`), as where the application and its
   * database start together. Until the server answers, connections are
   * refused with 503 (`DatabaseUnreachableError`) and health checks say
   * down; the check is retried in the background, `retryDelay` apart at
   * first and doubling up to 10 s, and at once when a request opens a
   * connection. It logs once when the datasource serves, then opens its
   * `min` connections. Default `false`: the bootstrap fails.
   */
  bootWithoutDatabase?: boolean;
  /**
   * On shutdown, how long to wait for checked-out clients to come back before
   * their connections are closed anyway. Default 10000 ms.
   */
  drainTimeoutMillis?: number;
  /**
   * Most requests that may wait for a client at once; one more fails at once
   * with `PoolQueueFullError`. Default: no bound.
   */
  maxWaitingClients?: number;
  /**
   * A client held longer than this (ms) logs one warning with where it was
   * acquired and how long it has been held. Default 0: off.
   */
  leakDetectionThreshold?: number;
  /**
   * SQL run on every client before it goes back to the pool, e.g.
   * `'DISCARD ALL'`. Without it the module undoes the session state it sees
   * a request leave (`SET`, `set_config(…, false)`, `LISTEN`, `PREPARE`,
   * cursors, temporary tables, session advisory locks); this is for state it
   * cannot see (changed inside functions). A failure closes the connection.
   * Default: none.
   */
  resetOnRelease?: string;
  /**
   * Fraction (0 to 1) by which each connection's `maxLifetimeSeconds` is
   * shortened at random, so connections opened together are not all
   * replaced together. Default 0.1.
   */
  maxLifetimeJitter?: number;
  /**
   * What the work of a request does once its HTTP client has hung up. Its
   * running query is cancelled either way. `'run'` (the default): later
   * queries and transactions run on clients of their own, as work outside
   * any request does, so a handler, and work it started without awaiting it
   * (an audit write, an event listener), can finish as it would with a plain
   * `pg.Pool`. `'refuse'`: they fail with `RequestAbandonedError`, as work
   * under a cancelled Go request context does, so a departed client costs
   * the database nothing more. Work of a request that ended normally always
   * runs.
   */
  queriesAfterHangUp?: 'refuse' | 'run';
  /**
   * How long a request holds its client. `'request'` (the default): from its
   * first query to its answer, so every query of the request runs on one
   * backend. `'query'`: each query borrows a client and hands it back as it
   * ends, so handlers that await other work between queries (an HTTP call, a
   * cache) hold no connection meanwhile; the request is pinned to its client,
   * as in `'request'`, from the moment it opens a transaction, takes the raw
   * client (`getClient()`), changes session state (`SET`, `LISTEN`, …) or,
   * on a datasource with replicas, writes, until its end. A
   * `ConnectionScope.run()` keeps one client throughout either way. See the
   * docs' Concepts page for what can differ between the two.
   */
  clientHold?: 'request' | 'query';
  /**
   * How long (ms) a request's work on this datasource may run, counted from
   * the request's start (not work in `ConnectionScope.run()`, which is no
   * request's), unless the request was given a deadline of its own
   * (`@RequestDeadline()`, `setRequestDeadline()`). When it passes, the
   * running query is cancelled on the server, an open transaction is rolled
   * back, later queries of the request fail at once, all with
   * `DeadlineExceededError` (HTTP 504). Default: none.
   */
  requestDeadlineMillis?: number;
  /**
   * The datasource runs behind a pooler in transaction mode (PgBouncer
   * `pool_mode = transaction`): statements that need a server session of
   * their own (`SET`, `LISTEN`, session advisory locks, named prepared
   * statements) fail with `SessionStateError` instead of misbehaving.
   */
  transactionPooling?: boolean;
  /**
   * Read replicas of this datasource. Each takes the primary's pool settings
   * (max, timeouts, ssl, user, password, database, …) except where and how to
   * connect: give each its `connectionString` or `host`/`port`, and anything
   * else that differs. Reads are routed to them only where asked for
   * (`@InjectConnection(name, { replica: true })`, `@ReadFromReplica()`).
   */
  replicas?: ReplicaOptions[];
  /** How long a replica that failed stays out of rotation before it is tried again. Default 5000 ms. */
  replicaRetryMillis?: number;
}

/** Which server a connection must reach; libpq's `target_session_attrs`. */
export type TargetSessionAttrs = 'any' | 'read-write' | 'read-only' | 'primary' | 'standby' | 'prefer-standby';

/** How the hosts are tried; libpq's `load_balance_hosts`. */
export type LoadBalanceHosts = 'disable' | 'random';

/** Where one read replica is, and any pool setting that differs from the primary's. */
export type ReplicaOptions = Omit<PoolModuleOptions, 'name' | 'replicas' | 'replicaRetryMillis' | 'bootWithoutDatabase'>;
