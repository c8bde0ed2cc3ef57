import type { PoolModuleOptions } from '../interfaces/pool-module-options.interface.js';
import { InvalidPoolOptionsError } from '../pool.errors.js';
import { readHostChoice } from './host-list.js';

// Options that hold a duration or a count and must not be negative.
const NON_NEGATIVE_OPTIONS = [
  'min',
  'idleTimeoutMillis',
  'connectionTimeoutMillis',
  'maxLifetimeSeconds',
  'statement_timeout',
  'query_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'keepAliveInitialDelayMillis',
  'retryAttempts',
  'retryDelay',
  'drainTimeoutMillis',
  'maxWaitingClients',
  'leakDetectionThreshold',
  'replicaRetryMillis',
  'requestDeadlineMillis',
] as const;

/** node-postgres' own default for `max`. */
const PG_DEFAULT_MAX = 10;

/**
 * Checks what node-postgres would accept silently and then misbehave on
 * (a pool of 0 clients waits forever, a negative timeout fires at once).
 * Throws `InvalidPoolOptionsError` naming the datasource and the option.
 */
export function validatePoolOptions(name: string, options: PoolModuleOptions): void {
  if (typeof name !== 'string' || name.trim() === '') {
    throw new InvalidPoolOptionsError(String(name), 'name', 'must be a non-empty string');
  }
  const fail = (option: string, reason: string): never => {
    throw new InvalidPoolOptionsError(name, option, reason);
  };
  const max = options.max ?? PG_DEFAULT_MAX;
  if (!Number.isInteger(max) || max < 1) fail('max', `must be an integer of at least 1, got ${String(options.max)}`);
  for (const option of NON_NEGATIVE_OPTIONS) {
    const value: unknown = options[option];
    // statement_timeout and friends also take `false` (no timeout) in node-postgres.
    if (value === undefined || value === null || value === false) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      fail(option, `must be a number of at least 0, got ${String(value)}`);
    }
  }
  if ((options.min ?? 0) > max) fail('min', `(${options.min}) must not exceed max (${max})`);
  const jitter = options.maxLifetimeJitter;
  if (jitter !== undefined && !(typeof jitter === 'number' && jitter >= 0 && jitter <= 1)) {
    fail('maxLifetimeJitter', `must be a number from 0 to 1, got ${String(jitter)}`);
  }
  if (options.replicas !== undefined && !(Array.isArray(options.replicas) && options.replicas.every(isObject))) {
    fail('replicas', 'must be an array of replica connection options');
  }
  const afterHangUp = options.queriesAfterHangUp;
  if (afterHangUp !== undefined && afterHangUp !== 'refuse' && afterHangUp !== 'run') {
    fail('queriesAfterHangUp', `must be 'refuse' or 'run', got ${String(afterHangUp)}`);
  }
  const hold = options.clientHold;
  if (hold !== undefined && hold !== 'request' && hold !== 'query') {
    fail('clientHold', `must be 'request' or 'query', got ${String(hold)}`);
  }
  // The host list, targetSessionAttrs and loadBalanceHosts, as the datasource will read them.
  const hosts = readHostChoice(options, options);
  if ('reason' in hosts) fail(hosts.option, hosts.reason);
  if (options.bootWithoutDatabase !== undefined && typeof options.bootWithoutDatabase !== 'boolean') {
    fail('bootWithoutDatabase', `must be true or false, got ${String(options.bootWithoutDatabase)}`);
  }
  // Only its type: a function is node-postgres' to call, for each new connection, and never printed.
  const password: unknown = options.password;
  if (password !== undefined && password !== null && typeof password !== 'string' && typeof password !== 'function') {
    fail('password', `must be a string or a function returning one, got a value of type ${typeof password}`);
  }
  if (options.resetOnRelease !== undefined && (typeof options.resetOnRelease !== 'string' || !options.resetOnRelease.trim())) {
    fail('resetOnRelease', 'must be a non-empty SQL string');
  }
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null;
}
