import type { PoolModuleOptions } from '../../lib/index.js';
import { serverConfig } from './database.js';

/**
 * The options of a test database as a connection URL, optionally on another
 * port (a proxy's or a closed one) of the same host.
 */
export function connectionUrl(options: PoolModuleOptions, port?: number): string {
  const url = options.connectionString
    ? new URL(options.connectionString)
    : new URL(`postgres://${encodeURIComponent(String(options.user))}@${String(options.host)}:${String(options.port)}/${String(options.database)}`);
  if (!options.connectionString && typeof options.password === 'string') url.password = options.password;
  if (port !== undefined) url.port = String(port);
  return url.toString();
}

/** Host and port of the machine's PostgreSQL. */
export function serverAddress(): { host: string; port: number } {
  const url = new URL(connectionUrl(serverConfig()));
  return { host: url.hostname, port: Number(url.port || 5432) };
}
