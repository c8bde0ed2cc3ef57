import { createRequire } from 'node:module';
import type { PoolConfig } from 'pg';

// pg's own parser of connection options (env vars, connection strings,
// defaults), so the target named in errors is the one pg really dials. It is
// not re-exported by pg's ES module entry, hence require().
const ConnectionParameters = createRequire(import.meta.url)('pg/lib/connection-parameters.js') as new (
  config: PoolConfig,
) => { user: string; host: string; port: number; database: string };

/** Where a pool's configuration connects, as pg reads it; undefined for an unparsable connection string. */
export function connectionTarget(config: PoolConfig): { user: string; host: string; port: number; database: string } | undefined {
  try {
    const { user, host, port, database } = new ConnectionParameters(config);
    return { user, host, port, database };
  } catch {
    return undefined;
  }
}

/**
 * `user@host:port/database` of a pool's configuration, for logs and errors.
 * Never includes the password or the connection string as given.
 */
export function describeTarget(config: PoolConfig): string {
  const target = connectionTarget(config);
  return target ? `${target.user}@${target.host}:${target.port}/${target.database}` : 'an unparsable connection string';
}

/** Removes the password of `config` wherever it may appear in `text`. */
export function redactSecrets(text: string, config: PoolConfig): string {
  const secrets = new Set<string>();
  if (typeof config.password === 'string' && config.password) secrets.add(config.password);
  if (config.connectionString) {
    secrets.add(config.connectionString);
    try {
      const password = new URL(config.connectionString).password;
      if (password) {
        secrets.add(password);
        secrets.add(decodeURIComponent(password));
      }
    } catch {
      // Not a URL: the whole string is already in the list.
    }
  }
  let redacted = text;
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    redacted = redacted.split(secret).join('***');
  }
  return redacted;
}
