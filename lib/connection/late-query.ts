import type { LeaseSource } from './lease-source.js';

// The module's own files (lib/ or dist/), whose frames are skipped to find the caller.
const MODULE_ROOT = new URL('..', import.meta.url).pathname;
// Call sites already noted; past this many, nothing more is noted (a bound on memory).
const MAX_NOTED_SITES = 100;
const notedSites = new Set<string>();

/**
 * Notes at debug level, once per call site, a query that came after its
 * request had ended and so ran on a client of its own: most often a missing
 * `await`, which the line helps find. Fire-and-forget work (event listeners,
 * audit writes) that means to outlive its request lands there too, and may.
 */
export function noteLateQuery(source: LeaseSource): void {
  if (notedSites.size >= MAX_NOTED_SITES) return;
  const site = callSite(new Error().stack ?? '');
  if (notedSites.has(site)) return;
  notedSites.add(site);
  source.debug(`work came after its request had ended and ran on a connection of its own (a missing await?): ${site}`);
}

function callSite(stack: string): string {
  const frames = stack.split('\n').slice(1).map((frame) => frame.trim());
  return frames.find((frame) => !frame.includes(MODULE_ROOT) && !frame.includes('(node:')) ?? frames[0] ?? 'at an unknown place';
}
