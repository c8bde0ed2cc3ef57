import type { Pool } from 'pg';
import { backendStates } from './database.js';

/** Resolves once every client of `pool` is back (a hang-up's goes back once its cancel is confirmed). */
export async function clientsBack(pool: Pool): Promise<void> {
  while (pool.totalCount - pool.idleCount > 0) await new Promise<void>((resolve) => pool.once('release', () => resolve()));
}

/** Every client back in the pool, and no backend of `database` left inside a transaction. */
export async function expectNoOpenTransaction(pool: Pool, database: string): Promise<void> {
  expect(pool.totalCount - pool.idleCount).toBe(0);
  const inTransaction = (await backendStates(database)).filter((backend) => backend.state?.startsWith('idle in transaction'));
  expect(inTransaction).toEqual([]);
}

/** A point where code under test stops until the test lets it go on. */
export class Gate {
  private arrivals: Array<() => void> = [];
  private opened: Promise<void> = Promise.resolve();

  /** Closes the gate; resolves `reached` when code arrives at it, `open()` lets it through. */
  close(): { reached: Promise<void>; open: () => void } {
    let open!: () => void;
    this.opened = new Promise((resolve) => (open = resolve));
    const reached = new Promise<void>((resolve) => this.arrivals.push(resolve));
    return { reached, open };
  }

  /** Called by the code under test: passes at once unless the gate is closed. */
  async pass(): Promise<void> {
    for (const arrived of this.arrivals.splice(0)) arrived();
    await this.opened;
  }
}
