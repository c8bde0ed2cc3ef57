import pg, { type PoolConfig } from 'pg';

/** The user and database are undefined where nothing names them and the process has no USER. */
export interface ConnectionTarget {
  user: string | undefined;
  host: string;
  port: number;
  database: string | undefined;
}

/**
 * Where a pool's configuration connects, as pg reads it; undefined for an
 * unparsable connection string. A pg.Client made (never connected) from the
 * options that name the target resolves them as the pool's clients do (the
 * connection string, the PG* variables, pg's defaults) and shows the outcome
 * as its public `user`, `host`, `port` and `database`. Only those options are
 * passed: a `stream` factory, say, must not run for this.
 */
export function connectionTarget(config: PoolConfig): ConnectionTarget | undefined {
  const { user, host, port, database, connectionString } = config;
  try {
    const client = new pg.Client({ user, host, port, database, connectionString });
    return { user: client.user, host: client.host, port: client.port, database: client.database };
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
