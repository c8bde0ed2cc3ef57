import { ConnectionScope, type PoolConnection } from '../../lib/index.js';
import { Deferred } from './deferred.js';

export interface HeldClient<T = void> {
  /** The server backend of the held client. */
  readonly pid: number;
  /** Lets the holder go on: runs its `then` on the same client, hands the client back, resolves with what `then` returned. */
  release(): Promise<T>;
}

/**
 * Checks out a client of `connection`'s datasource, in a `ConnectionScope`
 * of its own (as a request would), and holds it until `release()`.
 */
export async function holdClient<T = void>(connection: PoolConnection, then?: () => Promise<T>): Promise<HeldClient<T>> {
  const held = new Deferred<number>();
  const released = new Deferred();
  const job = ConnectionScope.run(async () => {
    held.resolve((await connection.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid);
    await released.promise;
    return then ? then() : (undefined as T);
  });
  // The job cannot end before release() unless its first query failed: that failure is the holder's.
  const pid = await Promise.race([held.promise, job.then(() => held.promise)]);
  return {
    pid,
    release: () => {
      released.resolve();
      return job;
    },
  };
}

/** Holds `count` clients at once, each in a scope of its own, until `release()`. */
export async function holdClients(connection: PoolConnection, count: number): Promise<{ pids: number[]; release: () => Promise<void> }> {
  const holders = await Promise.all(Array.from({ length: count }, () => holdClient(connection)));
  return {
    pids: holders.map((holder) => holder.pid),
    release: async () => {
      await Promise.all(holders.map((holder) => holder.release()));
    },
  };
}
