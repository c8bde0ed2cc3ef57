/**
 * Drizzle ORM on the request's connection: `DrizzleModule`, `@InjectDrizzle()`
 * and `createDrizzle()`. Needs the optional peer dependency `drizzle-orm`.
 * @module nestjs-pg-pool/drizzle
 */
export { DrizzleModule, type DrizzleModuleOptions } from './drizzle.module.js';
export { InjectDrizzle } from './drizzle.decorators.js';
export { getDrizzleToken } from './drizzle.tokens.js';
export { createDrizzle, type DrizzleDatabase, type DrizzleOptions, type DrizzleTransaction } from './create-drizzle.js';
export type { DrizzleTransactionConfig } from './transaction-config.js';
