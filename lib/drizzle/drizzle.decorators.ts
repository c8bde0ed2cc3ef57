import { Inject } from '@nestjs/common';
import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';

/** Injection token of the Drizzle database of a datasource (see `DrizzleModule`). */
export function getDrizzleToken(name: string = DEFAULT_DATASOURCE_NAME): string {
  return `Drizzle(${name})`;
}

/**
 * Injects the Drizzle database of a datasource (default `'default'`),
 * registered by `DrizzleModule.forRoot()`. Type the parameter with the
 * schema: `@InjectDrizzle() db: DrizzleDatabase<typeof schema>`.
 */
export const InjectDrizzle = (name?: string): ParameterDecorator & PropertyDecorator => Inject(getDrizzleToken(name));
