import type { PoolConfig } from 'pg';
import type { LoadBalanceHosts, PoolModuleOptions, TargetSessionAttrs } from '../interfaces/pool-module-options.interface.js';

/** One server a datasource may connect to. */
export interface HostAddress {
  readonly host: string;
  readonly port: number;
}

/** The hosts of a datasource and how to choose among them, read from its options. */
export interface HostChoice {
  /** Every host, in the order given; one entry for a single-host datasource. */
  readonly hosts: readonly HostAddress[];
  readonly targetSessionAttrs: TargetSessionAttrs;
  readonly loadBalanceHosts: LoadBalanceHosts;
  /**
   * The options to hand node-postgres: `host` a single string (the first
   * host), a multi-host `connectionString` cut down to its first host and
   * without the parameters node-postgres does not know.
   */
  readonly poolConfig: PoolConfig;
}

/** A connection string's parts around its host list: `scheme://userinfo@` | `h1:p1,h2:p2` | `/db?params#…`. */
interface SplitUrl {
  head: string;
  hosts: string;
  tail: string;
}

// The authority ends at the first '/', '?' or '#'; its user info at its last '@'.
const URL_PARTS = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/is;

/** Splits a URL connection string around its host list; undefined for another form (`host=… dbname=…`, a socket path). */
export function splitConnectionString(connectionString: string): SplitUrl | undefined {
  const parts = URL_PARTS.exec(connectionString);
  if (!parts) return undefined;
  const [, scheme, authority, tail] = parts;
  const at = authority.lastIndexOf('@');
  return { head: scheme + authority.slice(0, at + 1), hosts: authority.slice(at + 1), tail };
}

/** The password of a URL connection string, decoded, whatever its host list; undefined when it has none. */
export function connectionStringPassword(connectionString: string): string | undefined {
  const split = splitConnectionString(connectionString);
  const userInfo = split?.head.replace(/^[^:]*:\/\//, '').replace(/@$/, '');
  const colon = userInfo?.indexOf(':') ?? -1;
  if (!userInfo || colon < 0) return undefined;
  const password = userInfo.slice(colon + 1);
  try {
    return decodeURIComponent(password);
  } catch {
    return password;
  }
}

/**
 * Reads the host list (`host` as a comma-separated list, or a multi-host
 * connection string as libpq takes it: `postgres://u:p@h1:5432,h2:5433/db`)
 * and `targetSessionAttrs` / `loadBalanceHosts` (or the string's
 * `target_session_attrs` / `load_balance_hosts`; the options win). Returns
 * an error text, never naming the password, for what cannot be read.
 */
export function readHostChoice(options: PoolModuleOptions, poolConfig: PoolConfig): HostChoice | { option: string; reason: string } {
  const defaultPort = Number(options.port ?? process.env.PGPORT ?? 5432);
  let config = poolConfig;
  let hosts: HostAddress[] | undefined;
  let targetFromUrl: string | undefined;
  let balanceFromUrl: string | undefined;
  if (typeof poolConfig.host === 'string' && poolConfig.host.includes(',')) {
    const read = poolConfig.host.split(',').map((entry) => readHost(entry.trim(), defaultPort));
    const bad = read.findIndex((entry) => entry === undefined || entry.host === '');
    if (bad >= 0) return { option: 'host', reason: `entry ${bad + 1} of the list must be 'host' or 'host:port'` };
    hosts = read as HostAddress[];
  }
  const split = options.connectionString ? splitConnectionString(options.connectionString) : undefined;
  if (split) {
    const params = new URLSearchParams(split.tail.replace(/^[^?]*\??/, '').replace(/#.*$/, ''));
    targetFromUrl = params.get('target_session_attrs') ?? undefined;
    balanceFromUrl = params.get('load_balance_hosts') ?? undefined;
    params.delete('target_session_attrs');
    params.delete('load_balance_hosts');
    const urlHosts = split.hosts.split(',');
    const path = split.tail.replace(/[?#].*$/, '');
    const query = params.toString();
    if (urlHosts.length > 1 || targetFromUrl !== undefined || balanceFromUrl !== undefined) {
      const urlPort = Number(process.env.PGPORT ?? 5432);
      const read = urlHosts.map((entry) => readHost(decodeHost(entry), urlPort));
      if (read.some((entry) => entry === undefined || entry.host === '')) {
        return { option: 'connectionString', reason: 'its host list must be host[:port] entries separated by commas' };
      }
      hosts ??= urlHosts.length > 1 ? (read as HostAddress[]) : undefined;
      // node-postgres parses a single host; the module connects each client to the one it chose.
      config = { ...config, connectionString: `${split.head}${urlHosts[0]}${path}${query ? `?${query}` : ''}` };
    }
  }
  const targetSessionAttrs = options.targetSessionAttrs ?? targetFromUrl ?? 'any';
  if (!TARGETS.includes(targetSessionAttrs as TargetSessionAttrs)) {
    return { option: 'targetSessionAttrs', reason: `must be one of ${TARGETS.map((t) => `'${t}'`).join(', ')}, got ${String(targetSessionAttrs)}` };
  }
  const loadBalanceHosts = options.loadBalanceHosts ?? balanceFromUrl ?? 'disable';
  if (loadBalanceHosts !== 'disable' && loadBalanceHosts !== 'random') {
    return { option: 'loadBalanceHosts', reason: `must be 'disable' or 'random', got ${String(loadBalanceHosts)}` };
  }
  if (hosts) {
    // Each client gets its host and port from the module; pg must not see the array.
    config = { ...config, host: hosts[0].host, port: hosts[0].port };
  }
  return {
    hosts: hosts ?? [],
    targetSessionAttrs: targetSessionAttrs as TargetSessionAttrs,
    loadBalanceHosts,
    poolConfig: config,
  };
}

const TARGETS: readonly TargetSessionAttrs[] = ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'];

/** `'h'`, `'h:5433'` or `'[::1]:5433'`; undefined when it is none of these. */
function readHost(entry: string, defaultPort: number): HostAddress | undefined {
  const parts = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(entry);
  if (!parts) return undefined;
  const host = parts[1].replace(/^\[(.*)\]$/, '$1');
  const port = parts[2] === undefined ? defaultPort : Number(parts[2]);
  return isPort(port) ? { host, port } : undefined;
}

function isPort(port: number): boolean {
  return Number.isInteger(port) && port > 0 && port < 65536;
}

function decodeHost(entry: string): string {
  try {
    return decodeURIComponent(entry);
  } catch {
    return entry;
  }
}

/** `host:port`, as logs, errors and statistics name a host. */
export function hostKey(address: HostAddress): string {
  return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
