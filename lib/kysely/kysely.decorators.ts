import { Inject } from '@nestjs/common';
import { getKyselyToken } from './kysely.tokens.js';

/**
 * Injects the `Kysely` of a datasource (default `'default'`), registered by
 * `KyselyModule.forRoot()`. Type the property with your database interface:
 * `@InjectKysely() private readonly db: Kysely<Database>`.
 */
export const InjectKysely = (name?: string): ParameterDecorator & PropertyDecorator => Inject(getKyselyToken(name));
