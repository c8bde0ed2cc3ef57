import type { PoolModuleOptions } from '../../lib/index.js';
import { serverConfig } from './database.js';

/** A TCP address: where a server, a proxy or a closed port listens. */
export interface Address {
  readonly host: string;
  readonly port: number;
}

/**
 * The options of a test database as a connection URL, optionally on another
 * port (a proxy's or a closed one) of the same host. A password set beside a
 * connection string replaces the string's own: tests use that to put a
 * secret in the URL.
 */
export function connectionUrl(options: PoolModuleOptions, port?: number): string {
  const url = options.connectionString
    ? new URL(options.connectionString)
    : new URL(`postgres://${encodeURIComponent(String(options.user))}@${String(options.host)}:${String(options.port)}/${String(options.database)}`);
  if (typeof options.password === 'string') url.password = options.password;
  if (port !== undefined) url.port = String(port);
  return url.toString();
}

/** Host and port `options` connect to: the connection string's when there is one, as pg lets it win. */
export function addressOf(options: PoolModuleOptions): Address {
  const url = new URL(connectionUrl(options));
  return { host: url.hostname, port: Number(url.port || 5432) };
}

/** Host and port of the machine's PostgreSQL. */
export function serverAddress(): Address {
  return addressOf(serverConfig());
}

/**
 * The same database and credentials as `options`, reached at `address` (a
 * proxy's, a closed port). pg lets a connection string win over `host` and
 * `port`, so the string is dropped and its user, password and database
 * carried over as options (those set beside it win, as in connectionUrl()).
 */
export function optionsVia(options: PoolModuleOptions, address: Address): PoolModuleOptions {
  const { connectionString, ...rest } = options;
  const url = connectionString ? new URL(connectionString) : undefined;
  const fromUrl: PoolModuleOptions = url
    ? {
        ...(url.username ? { user: decodeURIComponent(url.username) } : {}),
        ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
        ...(url.pathname.length > 1 ? { database: decodeURIComponent(url.pathname.slice(1)) } : {}),
      }
    : {};
  return { ...fromUrl, ...rest, host: address.host, port: address.port };
}
