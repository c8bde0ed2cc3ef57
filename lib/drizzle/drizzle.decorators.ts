import { Inject } from '@nestjs/common';
import type { ConnectionRouting } from '../pool.utils.js';
import { getDrizzleToken } from './drizzle.tokens.js';

/**
 * Injects the Drizzle database of a datasource (default `'default'`),
 * registered by `DrizzleModule.forRoot()`. Type the parameter with the
 * schema: `@InjectDrizzle() db: DrizzleDatabase<typeof schema>`. With
 * `{ replica: true }`, its queries go through `@InjectConnection(name, { replica: true })`:
 * reads to a replica of the datasource, writes and transactions to the primary.
 */
export const InjectDrizzle = (name?: string, routing?: ConnectionRouting): ParameterDecorator & PropertyDecorator =>
  Inject(getDrizzleToken(name, routing));
