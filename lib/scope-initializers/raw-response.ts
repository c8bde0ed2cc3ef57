import type { ServerResponse } from 'node:http';

/** The Node response under Express' `res` or Fastify's `reply`. */
export function rawResponse(response: unknown): ServerResponse | undefined {
  const candidate = (response as { raw?: unknown } | undefined)?.raw ?? response;
  return typeof (candidate as ServerResponse | undefined)?.once === 'function' ? (candidate as ServerResponse) : undefined;
}
