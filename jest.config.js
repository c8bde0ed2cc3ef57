// Nest 12 is published as ES modules only, so the suites run in Jest's native
// ESM mode (NODE_OPTIONS=--experimental-vm-modules, set by `npm test`).
import { SWC_OPTIONS } from './test/support/swc-options.js';

export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // The package's own name, as README examples import it.
    '^nestjs-pg-pool$': '<rootDir>/lib/index.ts',
    '^nestjs-pg-pool/(.*)$': '<rootDir>/lib/$1/index.ts',
  },
  transform: { '^.+\\.ts$': ['@swc/jest', SWC_OPTIONS] },
  testMatch: ['<rootDir>/test/**/*.spec.ts'],
  // The docs site's browser test runs with `npm run docs:check` (jest.docs.config.js).
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/docs/'],
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  testTimeout: 30000,
  maxWorkers: 2,
};
