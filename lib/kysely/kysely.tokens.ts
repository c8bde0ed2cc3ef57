import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';

/** Injection token of the `Kysely` of a datasource (registered by `KyselyModule.forRoot()`). */
export function getKyselyToken(name: string = DEFAULT_DATASOURCE_NAME): string {
  return `Kysely(${name})`;
}
