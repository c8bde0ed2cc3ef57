// The docs site's browser test: run by `npm run docs:check` after `npm run docs:build`,
// apart from `npm test`, which needs neither a built site nor a browser.
import base from './jest.config.js';

export default {
  ...base,
  testMatch: ['<rootDir>/test/docs/**/*.spec.ts'],
  testPathIgnorePatterns: ['/node_modules/'],
  globalSetup: undefined,
  globalTeardown: undefined,
  maxWorkers: 1,
};
