import type pg from 'pg';
import type { Datasource } from '../datasource/datasource.js';

/** The ping running outside each datasource's pool, which the pings that come meanwhile share. */
const running = new WeakMap<Datasource, SharedPing>();

/**
 * `SELECT 1` on a connection of its own, outside `datasource`'s pool, given
 * up on (by this caller) the moment `signal` aborts. Pings that come while
 * one runs share it, so that a saturated pool costs the server one more
 * connection at most; that connection is closed once it answered, or once
 * every ping sharing it gave up.
 */
export function pingOutsidePool(datasource: Datasource, signal: AbortSignal): Promise<void> {
  let shared = running.get(datasource);
  if (shared === undefined) {
    shared = new SharedPing(datasource, datasource.clientOutsidePool());
    running.set(datasource, shared);
  }
  return shared.join(signal);
}

class SharedPing {
  private sharers = 0;
  private readonly answered: Promise<void>;

  constructor(
    private readonly datasource: Datasource,
    private readonly client: pg.Client,
  ) {
    // A connection that fails while nobody queries it emits 'error', which would otherwise end the process;
    // a failure while connecting or querying reaches `answered`.
    client.on('error', ignore);
    this.answered = client
      .connect()
      // Connected after every sharer gave up (host targeting probes first): no query for nobody.
      .then(() => (this.sharers > 0 ? client.query('SELECT 1') : undefined))
      .then(() => undefined);
    void this.answered.then(
      () => this.finish(),
      () => this.finish(),
    );
  }

  join(signal: AbortSignal): Promise<void> {
    this.sharers++;
    return new Promise((resolve, reject) => {
      const giveUp = (): void => {
        reject(signal.reason);
        if (--this.sharers === 0) this.finish();
      };
      signal.addEventListener('abort', giveUp, { once: true });
      this.answered.then(
        () => {
          signal.removeEventListener('abort', giveUp);
          resolve();
        },
        (error: unknown) => {
          signal.removeEventListener('abort', giveUp);
          reject(error);
        },
      );
    });
  }

  /** Answered, failed or given up on: the next ping opens a connection of its own, and this one closes (at once, mid-query or mid-handshake). */
  private finish(): void {
    if (running.get(this.datasource) === this) running.delete(this.datasource);
    this.client.end().catch(ignore);
  }
}

function ignore(): void {}
