import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';
import type { ConnectionRouting } from '../pool.utils.js';

/** Injection token of the Drizzle database of a datasource (see `DrizzleModule`); with `{ replica: true }`, of its twin that reads from replicas. */
export function getDrizzleToken(name: string = DEFAULT_DATASOURCE_NAME, routing: ConnectionRouting = {}): string {
  return routing.replica ? `Drizzle(${name}, replica)` : `Drizzle(${name})`;
}
