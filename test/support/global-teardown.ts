import './global-setup.ts';

/** Jest's globalTeardown: stops the embedded server global-setup.ts started, if it did. */
export default async function globalTeardown(): Promise<void> {
  await globalThis.nppEmbeddedPostgres?.stop();
}
