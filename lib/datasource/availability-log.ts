import {
  AuthenticationFailedError,
  DatabaseUnreachableError,
  PoolExhaustedError,
  PoolQueueFullError,
  type PoolUnavailableError,
} from '../pool.errors.js';

type OutageKind = 'unreachable' | 'failing authentication' | 'exhausted';

interface Outage {
  kind: OutageKind;
  readonly since: number;
  refused: number;
  /** Whether a new connection has opened since the server stopped taking them. */
  answered: boolean;
  /** Whether it began at startup, the application started without its database (`bootWithoutDatabase`). */
  readonly atStartup: boolean;
}

/**
 * A datasource's changes of state, logged once each: it became unreachable,
 * or its server refuses its credentials (errors: nothing new can be served),
 * exhausted (a warning: too busy to serve everyone in time), serving again
 * (a warning too, as it closes the incident: with how long it lasted and how
 * many acquisitions were refused meanwhile). The requests refused meanwhile
 * are answered 503 without a log line each (PoolUnavailableError is quiet).
 *
 * A server that stopped taking connections is back only once a new one has
 * opened: an idle client opened before (before the outage, or before a
 * password rotated) may still serve a request (or be handed out dead, as a
 * crash is noticed), and ending the outage on that would log it again at the
 * next connection the server refuses. Nor does a connection begun before the
 * outage did (with the password of before, say). Likewise a connection
 * attempt begun before an outage ended that fails after it belongs to that
 * outage, and starts no new one.
 */
export class AvailabilityLog {
  private outage: Outage | undefined = undefined;
  /** When the last outage ended (`performance.now()`). */
  private endedAt = -Infinity;

  constructor(
    private readonly error: (message: string) => void,
    private readonly warn: (message: string) => void,
  ) {}

  /** The startup check failed and the application starts anyway: an outage from now, logged as such. */
  startedWithout(refusal: DatabaseUnreachableError): void {
    const kind = outageKindOf(refusal) ?? 'unreachable';
    this.outage = { kind, since: performance.now(), refused: 0, answered: false, atStartup: true };
    this.error(
      `is ${kind} at startup; the application starts without it and connects in the background, ` +
        `connections are refused with 503 until ${kind === 'unreachable' ? 'it answers' : 'its credentials are accepted'}: ${refusal.message}`,
    );
  }

  /** An acquisition asked for at `askedAt` (`performance.now()`) was refused with `refusal`. */
  refused(refusal: PoolUnavailableError, askedAt = performance.now()): void {
    if (this.failed(refusal, askedAt) && this.outage) this.outage.refused++;
  }

  /**
   * A connection attempt begun at `startedAt` failed with `refusal`, the
   * module's own (the startup check's retries) or an acquisition's: logs a
   * change of state. True when `refusal` is the current outage's.
   */
  failed(refusal: PoolUnavailableError, startedAt: number): boolean {
    const kind = outageKindOf(refusal);
    if (kind === undefined) return false;
    const outage = this.outage;
    if (outage === undefined && startedAt < this.endedAt) return false;
    if (outage === undefined) {
      this.outage = { kind, since: performance.now(), refused: 0, answered: false, atStartup: false };
    } else {
      // An exhausted pool whose server then refuses connections has that outage; not the other way round.
      if (outage.kind === kind || kind === 'exhausted') return true;
      outage.kind = kind;
      outage.answered = false;
    }
    if (kind === 'unreachable') this.error(`is unreachable; connections are refused with 503 until it answers: ${refusal.message}`);
    else if (kind === 'exhausted') this.warn(`is exhausted; connections are refused with 503 while it stays so: ${refusal.message}`);
    else this.error(`fails authentication; connections are refused with 503 until its credentials are accepted: ${refusal.message}`);
    return true;
  }

  /** The pool opened a new connection, begun at `startedAt` (`performance.now()`). */
  connected(startedAt: number): void {
    if (this.outage && startedAt >= this.outage.since) this.outage.answered = true;
  }

  /** A client was handed out, or the startup check passed; `waiting` acquisitions still queue. */
  served(waiting: number): void {
    const outage = this.outage;
    if (outage === undefined) return;
    // An exhausted pool is over it once its queue has drained; a refusing server once it took a new connection.
    if (outage.kind === 'exhausted' ? waiting > 0 : !outage.answered) return;
    this.outage = undefined;
    this.endedAt = performance.now();
    const lasted = Math.round(performance.now() - outage.since);
    const state = outage.atStartup ? `${outage.kind} since startup` : outage.kind;
    this.warn(`serves again after ${lasted} ms ${state}; ${outage.refused} connection request(s) were refused meanwhile`);
  }
}

function outageKindOf(refusal: PoolUnavailableError): OutageKind | undefined {
  if (refusal instanceof AuthenticationFailedError) return 'failing authentication';
  if (refusal instanceof DatabaseUnreachableError) return 'unreachable';
  if (refusal instanceof PoolExhaustedError || refusal instanceof PoolQueueFullError) return 'exhausted';
  // PoolClosedError: the application is shutting down, which Nest already says.
  return undefined;
}
