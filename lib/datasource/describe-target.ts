import pg, { type PoolConfig } from 'pg';
import type { PoolModuleOptions } from '../interfaces/pool-module-options.interface.js';
import { connectionStringPassword, hostKey, readHostChoice } from './host-list.js';

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
export function connectionTarget(options: PoolConfig | PoolModuleOptions): ConnectionTarget | undefined {
  // Of a multi-host datasource, the first host: what pg would read.
  const choice = readHostChoice(options as PoolModuleOptions, options);
  const config = 'poolConfig' in choice ? choice.poolConfig : (options as PoolConfig);
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
export function describeTarget(options: PoolConfig | PoolModuleOptions): string {
  const target = connectionTarget(options);
  if (!target) return 'an unparsable connection string';
  const choice = readHostChoice(options as PoolModuleOptions, options);
  const hosts = 'hosts' in choice && choice.hosts.length > 1 ? choice.hosts.map(hostKey).join(',') : `${target.host}:${target.port}`;
  return `${target.user}@${hosts}/${target.database}`;
}

/** Removes the password of `config` wherever it may appear in `text`. */
export function redactSecrets(text: string, config: PoolConfig | PoolModuleOptions): string {
  const secrets = new Set<string>();
  if (typeof config.password === 'string' && config.password) secrets.add(config.password);
  if (config.connectionString) {
    secrets.add(config.connectionString);
    // Read as libpq's URLs are, several hosts included; another form is in the list whole.
    const encoded = /^[^:]*:\/\/[^:/?#@]*:([^/?#]*)@/.exec(config.connectionString)?.[1];
    const password = connectionStringPassword(config.connectionString);
    for (const secret of [encoded, password]) if (secret) secrets.add(secret);
  }
  let redacted = text;
  for (const secret of [...secrets].sort((a, b) => b.length - a.length)) {
    redacted = redacted.split(secret).join('***');
  }
  return redacted;
}
