/**
 * Kysely on the request's connection (needs `kysely`): `KyselyModule`,
 * `@InjectKysely()`, and `createKysely()` for a provider of your own.
 * @module nestjs-pg-pool/kysely
 */
// Entry `nestjs-pg-pool/kysely`: kept apart from the main entry so that only
// applications that use it need kysely installed.
export { KyselyModule, type KyselyModuleOptions } from './kysely.module.js';
export { InjectKysely } from './kysely.decorators.js';
export { getKyselyToken } from './kysely.tokens.js';
export { createKysely, type KyselyOptions } from './create-kysely.js';
export type { CursorConstructor } from './request-connection.js';
export { UnsupportedKyselyFeatureError } from './unsupported-kysely-feature.error.js';
