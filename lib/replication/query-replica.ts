import type { QueryResult, QueryResultRow } from 'pg';
import type { ConnectionScope } from '../connection/connection-scope.js';
import type { QueryInput } from '../connection/query-input.js';
import { ConnectionFailedError, DatabaseUnreachableError, PoolUnavailableError } from '../pool.errors.js';
import type { ReplicaSet } from './replica-set.js';

/**
 * Runs a read on the first replica that answers (on the scope's client of
 * it, held as the replica's `clientHold` says, if the query runs in a scope). A replica that cannot be reached or
 * loses its connection is taken out of rotation, a busy one passed over, and
 * the next one tried; undefined when none answered, so the caller reads from
 * the primary.
 */
export async function queryReplica<R extends QueryResultRow>(
  replicas: ReplicaSet,
  scope: ConnectionScope | undefined,
  input: QueryInput,
  values: readonly unknown[] | undefined,
): Promise<QueryResult<R> | undefined> {
  for (const replica of replicas.candidates()) {
    try {
      const result = scope ? await scope.query<R>(replica, input, values) : await replica.query<R>(input, values);
      replicas.markUp(replica);
      return result;
    } catch (error) {
      if (error instanceof DatabaseUnreachableError || error instanceof ConnectionFailedError) {
        replicas.markDown(replica, error.message);
      } else if (!(error instanceof PoolUnavailableError)) {
        // The replica answered (a DatabaseError): the caller's to handle.
        throw error;
      }
      // A busy replica is only passed over for this read.
    }
  }
  return undefined;
}
