import type { IncomingMessage } from 'node:http';

/**
 * Who holds a connection scope, named in leak warnings: the HTTP request it
 * belongs to (described only when a warning needs it, so that a request pays
 * no closure for it) or a function that names the holder.
 */
export type ScopeHolder = IncomingMessage | (() => string);

export function describeHolder(holder: ScopeHolder | undefined): string | undefined {
  if (holder === undefined) return undefined;
  if (typeof holder === 'function') return holder();
  // Express rewrites `url` while routing; `originalUrl` is what the client asked for.
  return `${holder.method} ${(holder as { originalUrl?: string }).originalUrl ?? holder.url}`;
}
