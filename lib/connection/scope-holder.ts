/**
 * An HTTP request as the platforms give it to Nest's request hook: Express'
 * `req` (the Node request itself) or Fastify's `request` (its `raw` is the
 * Node request). What each platform learned of the route it matched is read
 * from it only when a leak warning names it.
 */
export interface RoutedRequest {
  readonly method?: string;
  readonly url?: string;
  /** Express rewrites `url` while routing; `originalUrl` is what the client asked for. */
  readonly originalUrl?: string;
  /** Express: the route matched, whose layer holds the function Nest registered for it. */
  readonly route?: { readonly stack?: ReadonlyArray<{ readonly name?: string }> };
  /** Fastify: the route matched (`url` undefined when none did), and the function Nest registered for it. */
  readonly routeOptions?: { readonly url?: string; readonly handler?: { readonly name?: string } };
}

/**
 * Who holds a connection scope, named in leak warnings: the HTTP request it
 * belongs to (described only when a warning needs it, so that a request pays
 * no closure for it) or a function that names the holder.
 */
export type ScopeHolder = RoutedRequest | (() => string);

/**
 * `GET /path (Controller.method)`: the path without its query string, which
 * can carry tokens, and the handler, by the name Nest gives the function it
 * registers for a route (`Controller.method`). A request no route took (one
 * whose middleware held the client) is named by its path alone.
 */
export function describeHolder(holder: ScopeHolder | undefined): string | undefined {
  if (holder === undefined) return undefined;
  if (typeof holder === 'function') return holder();
  const url = holder.originalUrl ?? holder.url ?? '';
  const query = url.indexOf('?');
  const handler = handlerName(holder);
  return `${holder.method} ${query === -1 ? url : url.slice(0, query)}${handler ? ` (${handler})` : ''}`;
}

function handlerName(request: RoutedRequest): string | undefined {
  const routeOptions = request.routeOptions;
  // Fastify keeps the handler bound to its instance ('bound Controller.method').
  if (routeOptions) return routeOptions.url === undefined ? undefined : routeOptions.handler?.name?.replace(/^bound /, '') || undefined;
  const name = request.route?.stack?.at(-1)?.name;
  // Express names an anonymous layer so.
  return name && name !== '<anonymous>' ? name : undefined;
}
