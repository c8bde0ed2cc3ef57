import { Controller, Get, Inject, type DynamicModule, type INestApplication, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ExpressAdapter } from '@nestjs/platform-express';
import { FastifyAdapter } from '@nestjs/platform-fastify';

/** What every contender's service does: one `SELECT 1`-sized query. */
export interface QueryService {
  selectOne(): Promise<unknown>;
}

export const QUERY_SERVICE = Symbol('QUERY_SERVICE');
export const PG_POOL = Symbol('PG_POOL');

/** The one route of every contender: the same controller, only the service differs. */
@Controller()
export class BenchController {
  constructor(@Inject(QUERY_SERVICE) private readonly service: QueryService) {}

  @Get()
  get(): Promise<unknown> {
    return this.service.selectOne();
  }
}

export type AdapterName = 'express' | 'fastify';

export async function createApp(module: Type<unknown> | DynamicModule, adapter: AdapterName): Promise<INestApplication> {
  return NestFactory.create(module, adapter === 'fastify' ? new FastifyAdapter() : new ExpressAdapter(), {
    logger: false,
    abortOnError: false,
  });
}
