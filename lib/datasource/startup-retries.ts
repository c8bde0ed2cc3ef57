// The background retries wait at least this long (a `retryDelay` of 0 must
// not spin) and at most this long (or `retryDelay`, if longer): an outage of
// hours costs a connection attempt every 10 s, and a server back up waits
// no longer than that for the first of them.
const MIN_DELAY_MS = 100;
const MAX_DELAY_MS = 10_000;

/**
 * A startup check that failed at boot with `bootWithoutDatabase`, retried in
 * the background: `firstDelay` ms after the boot, the wait doubling after
 * each failure, and at once on `wake()` (a request got a new connection, so
 * the server answers). Ends at the first attempt that succeeds, or at
 * `stop()`; either way it leaves no timer behind. `attempt` resolves true
 * when it succeeded, and never rejects.
 */
export class StartupRetries {
  private timer: NodeJS.Timeout | undefined = undefined;
  private nextDelay: number;
  private readonly maxDelay: number;
  private over = false;

  constructor(
    private readonly attempt: () => Promise<boolean>,
    firstDelay: number,
  ) {
    this.nextDelay = Math.max(firstDelay, MIN_DELAY_MS);
    this.maxDelay = Math.max(firstDelay, MAX_DELAY_MS);
    this.schedule();
  }

  /** Tries now rather than at the next timer, unless an attempt runs already. */
  wake(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.run();
  }

  /** No more attempts; one in progress finishes, and is the last. */
  stop(): void {
    this.over = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    const wait = this.nextDelay;
    this.nextDelay = Math.min(wait * 2, this.maxDelay);
    this.timer = setTimeout(() => this.run(), wait);
  }

  private run(): void {
    this.timer = undefined;
    void this.attempt().then((succeeded) => {
      if (succeeded) this.over = true;
      if (!this.over) this.schedule();
    });
  }
}
