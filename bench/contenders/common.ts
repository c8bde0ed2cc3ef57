import { Controller, Get, Inject, type DynamicModule, type INestApplication, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { setTimeout as delay } from 'node:timers/promises';
import { config } from '../config.js';

/** What every contender's service does, the way its users would write it: one route handler shape each. */
export interface QueryService {
  /** `one-query`: one `SELECT 1`-sized query. */
  selectOne(): Promise<unknown>;
  /** `two-queries-5ms`: see `aroundOtherWork`. */
  selectTwice(): Promise<unknown>;
}

/** Time away from the database between the two queries of `two-queries-5ms`, such as an HTTP call. */
export const OTHER_WORK_MS = 5;

/** `two-queries-5ms` from a contender's one query: the query, 5 ms of other work, the query again; both rows. */
export async function aroundOtherWork(query: () => Promise<unknown>): Promise<unknown[]> {
  const first = await query();
  await delay(OTHER_WORK_MS);
  return [first, await query()];
}

export const QUERY_SERVICE = Symbol('QUERY_SERVICE');
export const PG_POOL = Symbol('PG_POOL');

@Controller()
class OneQueryController {
  constructor(@Inject(QUERY_SERVICE) private readonly service: QueryService) {}

  @Get()
  get(): Promise<unknown> {
    return this.service.selectOne();
  }
}

@Controller()
class TwoQueriesController {
  constructor(@Inject(QUERY_SERVICE) private readonly service: QueryService) {}

  @Get()
  get(): Promise<unknown> {
    return this.service.selectTwice();
  }
}

/**
 * The one route of every contender: the same controller, only the service
 * differs. A class per handler shape, so that neither pays for choosing.
 */
export const BenchController = config.handler === 'one-query' ? OneQueryController : TwoQueriesController;

export type AdapterName = 'express' | 'fastify';

export async function createApp(module: Type<unknown> | DynamicModule, adapter: AdapterName): Promise<INestApplication> {
  return NestFactory.create(module, adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(), {
    logger: false,
    abortOnError: false,
  });
}
