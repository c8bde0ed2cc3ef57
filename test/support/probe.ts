import { Deferred } from './deferred.js';

/**
 * Lets a test follow a handler: `held` tells which backend it holds once its
 * first query ran, `gate` is what it then awaits, `outcome` what it ended with.
 */
export class Probe {
  held = new Deferred<number>();
  gate = new Deferred();
  outcome = new Deferred<unknown>();
  reset(): void {
    this.held = new Deferred<number>();
    this.gate = new Deferred();
    this.outcome = new Deferred<unknown>();
  }

  /** Runs the handler's `work`, reports what it ended with (result or error) as `outcome`, and passes it on. */
  async follow<T>(work: () => Promise<T>): Promise<T> {
    try {
      const result = await work();
      this.outcome.resolve(result);
      return result;
    } catch (error) {
      this.outcome.resolve(error);
      throw error;
    }
  }
}
