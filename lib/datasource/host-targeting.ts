import pg, { DatabaseError } from 'pg';
import { trackReportedSettings } from '../connection/pg-client-state.js';
import type { LoadBalanceHosts, TargetSessionAttrs } from '../interfaces/pool-module-options.interface.js';
import { NoMatchingHostError, PrimaryLostError, type HostRefusal } from '../pool.errors.js';
import { hostKey, type HostAddress } from './host-list.js';
import { describeRole, matchesTarget, reportedRole, sessionRoleOf, type SessionRole } from './session-role.js';

// SQLSTATE read_only_sql_transaction: a write on a server that takes none.
const READ_ONLY_TRANSACTION = '25006';

/** What host targeting tells its datasource. */
export interface TargetingEvents {
  warn(message: string): void;
  debug(message: string): void;
  /** The connections to `host` must go: the idle ones now, the others as they come back. */
  hostEvicted(host: string): void;
}

/** What one probe learnt of one host. */
type ProbeResult = { address: HostAddress; role: SessionRole } | { address: HostAddress; reason: string };

/**
 * Which host a multi-host datasource's new connections go to, as libpq's
 * `target_session_attrs` and `load_balance_hosts` choose it. It remembers
 * the hosts that matched, so a new connection goes straight to one; with
 * none remembered (first use, or the one it had failed, stopped matching or
 * was evicted) it probes the hosts with short-lived clients first. Every
 * connection is checked once open, and each is stamped with its host's
 * generation, which an eviction moves on: connections of an older one are
 * closed, never reused.
 */
export class HostTargeting {
  /** Hosts known to match, in the order tried; empty: probe before the next connection. */
  private matching: HostAddress[] = [];
  private probing: Promise<HostAddress[]> | undefined = undefined;
  private readonly generations = new Map<string, number>();
  private readonly stamps = new WeakMap<pg.ClientBase, number>();
  /** The host lost last and when (performance.now()), until a probe finds another. */
  private lost: { host: string; at: number } | undefined = undefined;

  constructor(
    private readonly datasource: string,
    readonly hosts: readonly HostAddress[],
    readonly target: TargetSessionAttrs,
    private readonly loadBalance: LoadBalanceHosts,
    /** A client for a probe of `address` (host and port are then set on it), of the pool's own client class. */
    private readonly probeClient: () => pg.Client,
    private readonly events: TargetingEvents,
    /** Removes the password from a driver's message. */
    private readonly redact: (text: string) => string,
  ) {}

  /**
   * Opens `client` (with `open`: its own connect()) on the host chosen for
   * it, then checks that its server matches. A client that does not is
   * closed and the connect fails with NoMatchingHostError.
   */
  async connect(client: pg.Client, open: () => Promise<unknown>): Promise<void> {
    const address = await this.choose();
    const key = hostKey(address);
    // What pg connects to, and what the module's cancel requests and statistics read.
    client.host = address.host;
    client.port = address.port;
    if (this.target !== 'any') trackReportedSettings(client);
    try {
      await open();
    } catch (error) {
      this.lose(key, `failed (${this.reasonOf(error)})`);
      throw error;
    }
    const refusal = await this.refusalOf(client);
    if (refusal) {
      await client.end().catch(ignore);
      this.lose(key, refusal);
      throw new NoMatchingHostError(this.datasource, this.target, [{ host: key, reason: refusal }]);
    }
    this.stamps.set(client, this.generationOf(key));
  }

  /** True once the host `client` is on was evicted after it connected: it must be closed, not reused. */
  isEvicted(client: pg.ClientBase): boolean {
    const stamp = this.stamps.get(client);
    return stamp !== undefined && stamp !== this.generationOf(hostKey(client as pg.Client));
  }

  /**
   * Whether `error`, which a query on `client` failed with, says its host no
   * longer matches: a 25006 (read-only transaction) on a datasource that asks
   * for a writable server, unless the server still reports itself as one (the
   * session's own `SET TRANSACTION READ ONLY`). Evicts the host then and
   * returns the error to answer with instead.
   */
  hostLost(client: pg.ClientBase, error: Error): PrimaryLostError | undefined {
    if (!(error instanceof DatabaseError) || error.code !== READ_ONLY_TRANSACTION) return undefined;
    if (this.target !== 'read-write' && this.target !== 'primary') return undefined;
    const role = reportedRole(client);
    if (role && matchesTarget(this.target, role)) return undefined;
    const key = hostKey(client as pg.Client);
    if (this.stamps.get(client) === this.generationOf(key)) {
      this.generations.set(key, this.generationOf(key) + 1);
      this.lose(key, 'refused a write (SQLSTATE 25006)');
      this.events.hostEvicted(key);
    }
    return new PrimaryLostError(this.datasource, key, { cause: error });
  }

  /** The host a new connection goes to: a remembered one, or the one a probe finds. */
  private async choose(): Promise<HostAddress> {
    const matching = this.matching.length ? this.matching : await (this.probing ??= this.probe().finally(() => (this.probing = undefined)));
    return this.loadBalance === 'random' ? matching[Math.floor(Math.random() * matching.length)] : matching[0];
  }

  /**
   * Chooses as libpq would: the first host in order that matches, or
   * (`random`) every host that matches, tried in a shuffled order.
   * `prefer-standby` falls back to any host that answered. The hosts are
   * probed all at once, so that one that does not answer costs its
   * timeout once rather than delaying each host after it; in order, the
   * first that matches is taken as soon as those before it have answered.
   */
  private async probe(): Promise<HostAddress[]> {
    const order = this.loadBalance === 'random' ? shuffled(this.hosts) : [...this.hosts];
    const probes = order.map((address) => this.probeHost(address));
    let results: ProbeResult[];
    if (this.loadBalance === 'random') {
      results = await Promise.all(probes);
    } else {
      results = [];
      for (const probe of probes) {
        const result = await probe;
        results.push(result);
        if ('role' in result && matchesTarget(this.target, result.role)) break;
      }
    }
    const answered = results.filter((result) => 'role' in result);
    let matching = answered.filter((result) => matchesTarget(this.target, result.role));
    if (!matching.length && this.target === 'prefer-standby') matching = answered;
    if (!matching.length) {
      const refusals: HostRefusal[] = results.map((result) => ({
        host: hostKey(result.address),
        reason: 'role' in result ? `is ${describeRole(result.role)}` : result.reason,
      }));
      throw new NoMatchingHostError(this.datasource, this.target, refusals);
    }
    this.matching = matching.map((result) => result.address);
    this.found(matching[0].address, matching[0].role);
    return this.matching;
  }

  /** Connects a short-lived client to `address` and reads its role. */
  private async probeHost(address: HostAddress): Promise<ProbeResult> {
    const client = this.probeClient();
    client.host = address.host;
    client.port = address.port;
    // A failure also comes as an 'error' event, which would crash the process unheard.
    client.on('error', ignore);
    trackReportedSettings(client);
    try {
      await client.connect();
      return { address, role: await sessionRoleOf(client) };
    } catch (error) {
      return { address, reason: this.reasonOf(error) };
    } finally {
      await client.end().catch(ignore);
    }
  }

  /** Why a connected client's server does not do, if it does not. `prefer-standby` takes any. */
  private async refusalOf(client: pg.Client): Promise<string | undefined> {
    if (this.target === 'any' || this.target === 'prefer-standby') return undefined;
    let role: SessionRole;
    try {
      role = await sessionRoleOf(client);
    } catch (error) {
      return `failed (${this.reasonOf(error)})`;
    }
    return matchesTarget(this.target, role) ? undefined : `is ${describeRole(role)}`;
  }

  /** `host` failed or stopped matching: forget it, and say so when no remembered host is left. */
  private lose(host: string, reason: string): void {
    const before = this.matching.length;
    this.matching = this.matching.filter((address) => hostKey(address) !== host);
    if (before === 0 || this.matching.length > 0 || this.lost) return;
    this.lost = { host, at: performance.now() };
    this.events.warn(`${host} ${reason}; new connections look for another host matching targetSessionAttrs '${this.target}'`);
  }

  private found(address: HostAddress, role: SessionRole): void {
    const host = hostKey(address);
    if (!this.lost) return this.events.debug(`connections go to ${host} (${describeRole(role)})`);
    const millis = Math.round(performance.now() - this.lost.at);
    const what = this.target === 'read-write' || this.target === 'primary' ? 'writes were unavailable' : 'new connections had no host';
    this.events.warn(`connections go to ${host} now (${describeRole(role)}); ${what} for ${millis} ms since ${this.lost.host} was lost`);
    this.lost = undefined;
  }

  private generationOf(host: string): number {
    return this.generations.get(host) ?? 0;
  }

  private reasonOf(error: unknown): string {
    return this.redact(error instanceof Error ? error.message || String((error as { code?: unknown }).code ?? error.name) : String(error));
  }
}

/**
 * The pool's client class for a multi-host datasource: each client connects
 * where `targeting` says, and only stays if its server matches.
 */
export function targetedClientClass(base: typeof pg.Client, targeting: HostTargeting): typeof pg.Client {
  return class TargetedClient extends base {
    override connect(): Promise<pg.Client>;
    override connect(callback: (err: Error) => void): void;
    override connect(callback?: (err: Error) => void): Promise<pg.Client> | void {
      // pg-pool listens for 'error' only once this connect calls back; pg's own
      // connect ends earlier. A server that ends the session in between (a
      // failover) would emit it unheard and crash the process: it fails the connect instead.
      let ended: Error | undefined;
      const endedMeanwhile = (error: Error): void => void (ended ??= error);
      this.on('error', endedMeanwhile);
      const connected = targeting
        .connect(this, () => super.connect())
        .finally(() => this.removeListener('error', endedMeanwhile))
        .then(() => {
          if (ended) throw ended;
        });
      if (!callback) return connected.then(() => this);
      connected.then(() => (callback as (err: Error | null) => void)(null), callback);
    }
  };
}

function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

function ignore(): void {}
