/**
 * Fastify's inject() loads light-my-request, which requires an ES module (cookie 2): Jest's module
 * loader can only do that on Node 24.9 and later. CI runs the suites on Node 24 and 26 too.
 */
const [major, minor] = process.versions.node.split('.').map(Number);
const loads = major > 24 || (major === 24 && minor >= 9);

/** Whether inject() can load here; when it cannot, prints why `what` is skipped. */
export function injectLoads(what: string): boolean {
  if (!loads) process.stdout.write(`[skipped] ${what}: Jest cannot load light-my-request on Node ${process.versions.node} (needs 24.9+)\n`);
  return loads;
}

/** `it` where inject() can load, else a skip with a printed reason. */
export function itWhenInjectLoads(name: string, test: () => Promise<void>): void {
  (injectLoads(name) ? it : it.skip)(name, test);
}
