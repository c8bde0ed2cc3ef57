import { HUNG_UP, type ConnectionLease } from '../connection/connection-lease.js';
import type { Datasource } from '../datasource/datasource.js';
import { pingOutsidePool } from './ping-outside-pool.js';

/**
 * Runs `SELECT 1` on a client of `datasource` and gives up the moment `signal`
 * aborts, holding nothing past it: a client still on its way is released as
 * soon as it arrives, and a running query is cancelled on the server, its
 * client released when the server stops it. A saturated pool would make the
 * ping queue behind the requests it reports on, and answer down for a server
 * that serves them: it then pings on a connection of its own (see pingOutsidePool()).
 */
export async function ping(datasource: Datasource, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  if (datasource.saturated) return pingOutsidePool(datasource, signal);
  const lease = await acquireUnlessAborted(datasource, signal);
  const cancel = (): void => lease.release(HUNG_UP);
  signal.addEventListener('abort', cancel, { once: true });
  try {
    await lease.query('SELECT 1');
  } finally {
    signal.removeEventListener('abort', cancel);
    lease.release();
  }
}

function acquireUnlessAborted(datasource: Datasource, signal: AbortSignal): Promise<ConnectionLease> {
  const acquiring = datasource.acquire();
  return new Promise((resolve, reject) => {
    const abandon = (): void => {
      // pg-pool cannot withdraw a queued request: let it complete, then hand the client straight back.
      acquiring.then(
        (lease) => lease.release(),
        () => undefined,
      );
      reject(signal.reason);
    };
    signal.addEventListener('abort', abandon, { once: true });
    acquiring.then(
      (lease) => {
        signal.removeEventListener('abort', abandon);
        resolve(lease);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', abandon);
        reject(error);
      },
    );
  });
}
