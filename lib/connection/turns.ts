/**
 * Lets units of work on one connection take turns, in the order they asked:
 * two transactions (or two savepoints of one transaction) interleaved on one
 * client would end up inside each other.
 */
export class Turns {
  private last: Promise<void> = Promise.resolve();
  private queued = 0;

  /** True while a turn runs or waits. */
  get busy(): boolean {
    return this.queued > 0;
  }

  async take<T>(work: () => Promise<T>): Promise<T> {
    this.queued++;
    const previous = this.last;
    let ended!: () => void;
    this.last = new Promise((resolve) => (ended = resolve));
    try {
      await previous;
      return await work();
    } finally {
      this.queued--;
      ended();
    }
  }

  /** Resolves once no turn runs or waits. */
  async idle(): Promise<void> {
    // Turns end in order, so the last one ending means all have; loop for those queued meanwhile.
    while (this.busy) await this.last;
  }
}
