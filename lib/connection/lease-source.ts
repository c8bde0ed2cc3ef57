import type { QueryResult, QueryResultRow } from 'pg';
import type { ConnectionLease } from './connection-lease.js';
import type { QueryInput } from './query-input.js';
import type { ScopeHolder } from './scope-holder.js';

/** Told, once, how an acquisition ended: the lease, or why there is none. */
export interface LeaseRecipient {
  received(lease: ConnectionLease): void;
  refused(error: Error): void;
}

/** What a connection scope needs of a datasource: clients to lend, and how long a request holds one. */
export interface LeaseSource {
  readonly name: string;
  /** `'query'`: a request's client goes back after each query unless something pins it (see `clientHold`). */
  readonly holdsPerQuery: boolean;
  /** Work of a request whose client hung up is refused (`queriesAfterHangUp: 'refuse'`). */
  readonly refusesAfterHangUp: boolean;
  /** How long (ms) from its start a request's work may run here unless the request was given a deadline (`requestDeadlineMillis`); 0: no limit. */
  readonly deadlineMillis: number;
  /** Checks out a client for `recipient`; `holder` names the borrower in leak warnings. */
  lend(holder: ScopeHolder | undefined, recipient: LeaseRecipient): void;
  /** One query on a client borrowed for it alone, like `pool.query`. */
  query<R extends QueryResultRow>(input: QueryInput, values?: readonly unknown[]): Promise<QueryResult<R>>;
  debug(message: string): void;
}
