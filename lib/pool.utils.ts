import { DEFAULT_DATASOURCE_NAME } from './pool.constants.js';

/** Injection token of the `pg.Pool` of a datasource. */
export function getPoolToken(name: string = DEFAULT_DATASOURCE_NAME): string {
  return `PgPool(${name})`;
}

/** How `@InjectConnection()` routes reads. */
export interface ConnectionRouting {
  /** Read statements go to a replica of the datasource (see `replicas`); writes still go to the primary. */
  replica?: boolean;
}

/** Injection token of the scoped `PoolConnection` of a datasource. */
export function getConnectionToken(name: string = DEFAULT_DATASOURCE_NAME, routing: ConnectionRouting = {}): string {
  return routing.replica ? `PoolConnection(${name}, replica)` : `PoolConnection(${name})`;
}

/** Injection token of the module's internal `Datasource` object. */
export function getDatasourceToken(name: string = DEFAULT_DATASOURCE_NAME): string {
  return `PoolDatasource(${name})`;
}

/** Injection token of the resolved options of a datasource. */
export function getPoolOptionsToken(name: string = DEFAULT_DATASOURCE_NAME): string {
  return `PoolOptions(${name})`;
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True once `promise` settles (either way), false if `ms` milliseconds pass first. */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<false>((resolve) => (timer = setTimeout(resolve, ms, false)));
  const settled = promise.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}
