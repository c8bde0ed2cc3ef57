/**
 * Tests that roll back: each test inside a transaction undone at its end,
 * every query of the application under test on that one connection.
 * @module nestjs-pg-pool/testing
 */
// Entry `nestjs-pg-pool/testing`: test tooling, kept out of the main entry.
export { beginTestTransaction, rollbackEachTest, type RollbackEachTestOptions, type TestTransaction } from './test-transaction.js';
