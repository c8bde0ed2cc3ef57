import { Inject } from '@nestjs/common';
import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';
import type { ConnectionRouting } from '../pool.utils.js';

/** Injection token of the Drizzle database of a datasource (see `DrizzleModule`); with `{ replica: true }`, of its twin that reads from replicas. */
export function getDrizzleToken(name: string = DEFAULT_DATASOURCE_NAME, routing: ConnectionRouting = {}): string {
  return routing.replica ? `Drizzle(${name}, replica)` : `Drizzle(${name})`;
}

/**
 * Injects the Drizzle database of a datasource (default `'default'`),
 * registered by `DrizzleModule.forRoot()`. Type the parameter with the
 * schema: `@InjectDrizzle() db: DrizzleDatabase<typeof schema>`. With
 * `{ replica: true }`, its queries go through `@InjectConnection(name, { replica: true })`:
 * reads to a replica of the datasource, writes and transactions to the primary.
 */
export const InjectDrizzle = (name?: string, routing?: ConnectionRouting): ParameterDecorator & PropertyDecorator =>
  Inject(getDrizzleToken(name, routing));
