import { DEFAULT_DATASOURCE_NAME } from './pool.constants.js';

/** Injection token of the `pg.Pool` of a datasource. */
export function getPoolToken(name: string = DEFAULT_DATASOURCE_NAME): string {
  return `PgPool(${name})`;
}

/** Injection token of the scoped `PoolConnection` of a datasource. */
export function getConnectionToken(name: string = DEFAULT_DATASOURCE_NAME): string {
  return `PoolConnection(${name})`;
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
