import { Inject } from '@nestjs/common';
import { getConnectionToken, getPoolToken, type ConnectionRouting } from './pool.utils.js';

/** Injects the `pg.Pool` of a datasource (default `'default'`). */
export const InjectPool = (name?: string): ParameterDecorator & PropertyDecorator =>
  Inject(getPoolToken(name));

/**
 * Injects the `PoolConnection` of a datasource (default `'default'`): a
 * singleton whose queries run on the client of the current request. With
 * `{ replica: true }`, its reads go to one of the datasource's replicas.
 */
export const InjectConnection = (name?: string, routing?: ConnectionRouting): ParameterDecorator & PropertyDecorator =>
  Inject(getConnectionToken(name, routing));
