// How the tests compile TypeScript with SWC: jest (jest.config.js) and the
// fault suite's child processes (faults/support/ts-loader.mjs) share it.
export const SWC_OPTIONS = {
  jsc: {
    parser: { syntax: 'typescript', decorators: true },
    transform: { legacyDecorator: true, decoratorMetadata: true, useDefineForClassFields: false },
    target: 'es2022',
  },
  module: { type: 'es6' },
  sourceMaps: 'inline',
};
