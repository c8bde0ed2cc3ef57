import { Inject } from '@nestjs/common';
import { getConnectionToken, getPoolToken } from './pool.utils.js';

/** Injects the `pg.Pool` of a datasource (default `'default'`). */
export const InjectPool = (name?: string): ParameterDecorator & PropertyDecorator =>
  Inject(getPoolToken(name));

/**
 * Injects the `PoolConnection` of a datasource (default `'default'`): a
 * singleton whose queries run on the client of the current request.
 */
export const InjectConnection = (name?: string): ParameterDecorator & PropertyDecorator =>
  Inject(getConnectionToken(name));
