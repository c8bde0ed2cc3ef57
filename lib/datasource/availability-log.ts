import {
  DatabaseUnreachableError,
  PoolExhaustedError,
  PoolQueueFullError,
  type PoolUnavailableError,
} from '../pool.errors.js';

type OutageKind = 'unreachable' | 'exhausted';

interface Outage {
  kind: OutageKind;
  readonly since: number;
  refused: number;
  /** Whether a new connection has opened since the server became unreachable. */
  answered: boolean;
}

/**
 * A datasource's changes of state, logged once each: it became unreachable
 * (an error: nothing can be served), exhausted (a warning: too busy to serve
 * everyone in time), serving again (a warning too, as it closes the
 * incident: with how long it lasted and how many acquisitions were refused
 * meanwhile). The requests refused meanwhile are answered 503 without a log
 * line each (PoolUnavailableError is quiet).
 *
 * An unreachable server is back only once a new connection has opened: an idle
 * client opened before the outage may still serve a request (or be handed out
 * dead, as a crash is noticed), and ending the outage on that would log it
 * again at the next connection the server refuses.
 */
export class AvailabilityLog {
  private outage: Outage | undefined = undefined;

  constructor(
    private readonly error: (message: string) => void,
    private readonly warn: (message: string) => void,
  ) {}

  /** An acquisition was refused with `refusal`. */
  refused(refusal: PoolUnavailableError): void {
    const kind = outageKindOf(refusal);
    if (kind === undefined) return;
    const outage = this.outage;
    if (outage === undefined) {
      this.outage = { kind, since: performance.now(), refused: 1, answered: false };
    } else {
      outage.refused++;
      // An exhausted pool whose server then goes away is unreachable; not the other way round.
      if (outage.kind === kind || outage.kind === 'unreachable') return;
      outage.kind = kind;
      outage.answered = false;
    }
    if (kind === 'unreachable') this.error(`is unreachable; connections are refused with 503 until it answers: ${refusal.message}`);
    else this.warn(`is exhausted; connections are refused with 503 while it stays so: ${refusal.message}`);
  }

  /** The pool opened a new connection. */
  connected(): void {
    if (this.outage) this.outage.answered = true;
  }

  /** A client was handed out; `waiting` acquisitions still queue behind it. */
  served(waiting: number): void {
    const outage = this.outage;
    if (outage === undefined) return;
    // An exhausted pool is over it once its queue has drained; an unreachable server once it took a new connection.
    if (outage.kind === 'exhausted' ? waiting > 0 : !outage.answered) return;
    this.outage = undefined;
    const lasted = Math.round(performance.now() - outage.since);
    this.warn(`serves again after ${lasted} ms ${outage.kind}; ${outage.refused} connection request(s) were refused meanwhile`);
  }
}

function outageKindOf(refusal: PoolUnavailableError): OutageKind | undefined {
  if (refusal instanceof DatabaseUnreachableError) return 'unreachable';
  if (refusal instanceof PoolExhaustedError || refusal instanceof PoolQueueFullError) return 'exhausted';
  // PoolClosedError: the application is shutting down, which Nest already says.
  return undefined;
}
