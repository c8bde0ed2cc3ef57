import {
  Injectable,
  Module,
  type CallHandler,
  type DynamicModule,
  type MiddlewareConsumer,
  type NestInterceptor,
  type NestMiddleware,
  type NestModule,
} from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Observable } from 'rxjs';
import { BenchController, QUERY_SERVICE } from './common.js';
import type { Contender } from './index.js';

/**
 * Ablations, not part of the default run (pick them with BENCH_CONTENDERS):
 * the singleton pg.Pool contender plus one ingredient of a scoped connection
 * each, to see what each costs on its own.
 */
const storage = new AsyncLocalStorage<object>();

@Injectable()
class NoopInterceptor implements NestInterceptor {
  intercept(_context: unknown, next: CallHandler): Observable<unknown> {
    return next.handle();
  }
}

@Injectable()
class AlsInterceptor implements NestInterceptor {
  intercept(_context: unknown, next: CallHandler): Observable<unknown> {
    return storage.run({}, () => next.handle());
  }
}

@Injectable()
class AlsMiddleware implements NestMiddleware {
  use(_req: unknown, _res: unknown, next: () => void): void {
    storage.run({}, next);
  }
}

export function experiments(singletonProviders: () => DynamicModule['providers'], serviceClass: new (...args: never[]) => unknown): Contender[] {
  const build = (extra: DynamicModule['providers'], middleware: boolean): DynamicModule => {
    @Module({})
    class ExperimentModule implements NestModule {
      configure(consumer: MiddlewareConsumer): void {
        if (middleware) consumer.apply(AlsMiddleware).forRoutes('*');
      }
    }
    return {
      module: ExperimentModule,
      controllers: [BenchController],
      providers: [...(singletonProviders() ?? []), ...(extra ?? []), { provide: QUERY_SERVICE, useClass: serviceClass }],
    };
  };
  return [
    { id: 'x-noop-interceptor', label: '(2) + pass-through interceptor', pool: 'provider', module: () => build([{ provide: APP_INTERCEPTOR, useClass: NoopInterceptor }], false) },
    { id: 'x-als-interceptor', label: '(2) + ALS opened in an interceptor', pool: 'provider', module: () => build([{ provide: APP_INTERCEPTOR, useClass: AlsInterceptor }], false) },
    { id: 'x-als-middleware', label: '(2) + ALS opened in a middleware', pool: 'provider', module: () => build([], true) },
    {
      id: 'x-als-middleware-noop-interceptor',
      label: '(2) + ALS middleware + pass-through interceptor',
      pool: 'provider',
      module: () => build([{ provide: APP_INTERCEPTOR, useClass: NoopInterceptor }], true),
    },
  ];
}
