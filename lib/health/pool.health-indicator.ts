import { Injectable } from '@nestjs/common';
import { HealthIndicatorService, type HealthCheckAttempt, type HealthIndicatorResult } from '@nestjs/terminus';
import { DatasourceRegistry } from '../datasource/datasource.registry.js';
import { PoolStatsService } from '../datasource/pool-stats.service.js';
import { DEFAULT_DATASOURCE_NAME } from '../pool.constants.js';
import { describeFailure } from './describe-failure.js';
import { ping } from './ping.js';
import { poolLoad, type PoolLoad } from './pool-load.js';
import type { PingCheckOptions, PoolCheckOptions, ReplicaCheckOptions } from './pool-health-options.interface.js';

const DEFAULT_PING_TIMEOUT_MS = 1000;
const DEFAULT_MAX_UTILIZATION = 0.9;

/**
 * Terminus health indicators of the module's datasources. Provide it in a
 * module that imports `TerminusModule`.
 */
@Injectable()
export class PoolHealthIndicator {
  /** @internal Nest creates the indicator: list it in `providers` and inject it. */
  constructor(
    private readonly health: HealthIndicatorService,
    private readonly registry: DatasourceRegistry,
    private readonly stats: PoolStatsService,
  ) {}

  /**
   * Up, with its response time, when a pooled client answers `SELECT 1` within
   * `timeout`; otherwise down with a short reason (`timeout of 1000ms exceeded`,
   * `connection refused`, `authentication failed`, …). With every connection
   * of the pool in use, the ping does not queue behind the requests it reports
   * on: it runs on a connection of its own, outside the pool, closed after.
   * Returns Terminus' attempt, so `.withTimeout()` and `.cacheFor()` can still be chained.
   */
  pingCheck<const Key extends string>(key: Key, options: PingCheckOptions = {}): HealthCheckAttempt<Key> {
    const datasource = this.registry.get(options.name ?? DEFAULT_DATASOURCE_NAME);
    const attempt = this.health
      .check(key)
      .attempt(async ({ signal }) => {
        try {
          await ping(datasource, signal);
        } catch (error) {
          // Terminus shows the message as is: only a short reason goes in it.
          throw new Error(describeFailure(error));
        }
      })
      .withTimeout(options.timeout ?? DEFAULT_PING_TIMEOUT_MS);
    return options.cacheFor === undefined ? attempt : attempt.cacheFor(options.cacheFor);
  }

  /**
   * The pool's figures (total, idle, in use, waiting, max, utilization):
   * degraded (HTTP 200) when the share in use passes `maxUtilization`, down
   * when more than `maxWaiting` requests wait for a connection. A datasource
   * with replicas also lists each replica pool (`replicas`: name, status and
   * the same figures, judged by the same thresholds); a replica over them
   * makes the check degraded, never down, since reads it cannot take go to
   * the primary. `name` may also be one replica pool's (`default (replica 1)`),
   * checked alone like a datasource. Reads counters only; it never touches the database.
   */
  poolCheck<const Key extends string>(key: Key, options: PoolCheckOptions = {}): HealthIndicatorResult<Key> {
    const name = options.name ?? DEFAULT_DATASOURCE_NAME;
    const maxUtilization = options.maxUtilization ?? DEFAULT_MAX_UTILIZATION;
    if (!(maxUtilization >= 0 && maxUtilization <= 1)) {
      throw new RangeError(`poolCheck("${key}"): maxUtilization must be between 0 and 1, got ${maxUtilization}`);
    }
    const judge = (poolName: string): PoolLoad => poolLoad(this.stats.get(poolName), options.maxWaiting, maxUtilization);
    const pool = judge(name);
    const replicas = (this.registry.replicasOf(this.registry.getPool(name))?.replicas ?? []).map((replica) => ({ name: replica.name, ...judge(replica.name) }));
    const data = {
      ...pool.figures,
      ...(replicas.length ? { replicas: replicas.map((replica) => ({ name: replica.name, status: replica.status, ...replica.figures })) } : {}),
    };
    const session = this.health.check(key);
    const replicasOver = replicas.filter((replica) => replica.status !== 'up');
    if (pool.status === 'up' && replicasOver.length === 0) return session.up(data);
    const messages = [...(pool.message ? [pool.message] : []), ...replicasOver.map((replica) => `${replica.name}: ${replica.message}`)];
    const withMessage = { ...data, message: messages.join('; ') };
    return pool.status === 'down' ? session.down(withMessage) : session.degraded(withMessage);
  }

  /**
   * Pings every replica of a datasource (each within `timeout`; one whose pool
   * is saturated on a connection of its own, as `pingCheck` does) and puts the
   * ones that answer back in rotation, the others out: up when all answer,
   * degraded (HTTP 200: reads fall back to the primary) when some or all do
   * not, each replica listed by name with its state. Up, with no list, for a
   * datasource without replicas.
   */
  async replicaCheck<const Key extends string>(key: Key, options: ReplicaCheckOptions = {}): Promise<HealthIndicatorResult<Key>> {
    const replicas = this.registry.replicasOf(this.registry.get(options.name ?? DEFAULT_DATASOURCE_NAME));
    const session = this.health.check(key);
    if (!replicas) return session.up({ replicas: [] });
    const timeout = options.timeout ?? DEFAULT_PING_TIMEOUT_MS;
    const states = await Promise.all(
      replicas.replicas.map(async (replica) => {
        try {
          await ping(replica, AbortSignal.timeout(timeout));
          replicas.markUp(replica);
          return { name: replica.name, up: true };
        } catch (error) {
          const reason = describeFailure(error);
          replicas.markDown(replica, reason);
          return { name: replica.name, up: false, reason };
        }
      }),
    );
    const down = states.filter((state) => !state.up).length;
    if (down === 0) return session.up({ replicas: states });
    return session.degraded({ replicas: states, message: `${down} of ${states.length} replicas down; their reads go elsewhere` });
  }
}
