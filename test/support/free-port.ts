// One helper for the tests and the sample app, which cannot import the tests' code.
export { freePort } from '../../sample-app/databases/embedded-postgres.js';
