import {
  Body,
  Controller,
  Get,
  Injectable,
  Module,
  Post,
  Req,
  Scope,
  UseGuards,
  type CanActivate,
  type ExecutionContext,
  type INestApplication,
  type MiddlewareConsumer,
  type NestMiddleware,
  type NestModule,
} from '@nestjs/common';
import { InterceptorsConsumer } from '@nestjs/core/interceptors/interceptors-consumer.js';
import type { Pool } from 'pg';
import { lastValueFrom, type Observable } from 'rxjs';
import supertest from 'supertest';
import { ConnectionScope, ConnectionScopeInterceptor, getPoolToken, InjectConnection, PoolConnection, PoolModule } from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ADAPTERS, createHttpApp } from './support/http-app.js';

const PID = 'SELECT pg_backend_pid() AS pid';

@Injectable()
class PidService {
  constructor(@InjectConnection() readonly connection: PoolConnection) {}
  async pid(): Promise<number> {
    return (await this.connection.query<{ pid: number }>(PID)).rows[0].pid;
  }
}

/** Remembers the backend a guard's query ran on, per request. */
@Injectable()
class QueryingGuard implements CanActivate {
  constructor(private readonly service: PidService) {}
  async canActivate(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<{ guardPid?: number }>();
    request.guardPid = await this.service.pid();
    return true;
  }
}

@Controller()
class BodyController {
  constructor(private readonly service: PidService) {}

  @Post('body')
  async body(@Body() input: { n: number }): Promise<{ n: number; pids: number[] }> {
    return { n: input.n, pids: [await this.service.pid(), await this.service.pid()] };
  }
}

@Controller('guarded')
@UseGuards(QueryingGuard)
class GuardedController {
  constructor(private readonly service: PidService) {}

  @Get()
  async pids(@Req() request: { guardPid?: number }): Promise<number[]> {
    return [request.guardPid ?? -1, await this.service.pid()];
  }
}

/** An application's own middleware that queries: it runs before Nest's pipeline, in the request's scope. */
@Injectable()
class QueryingMiddleware implements NestMiddleware {
  constructor(private readonly service: PidService) {}
  use(request: { middlewarePid?: number }, _response: unknown, next: (error?: unknown) => void): void {
    this.service.pid().then((pid) => {
      request.middlewarePid = pid;
      next();
    }, next);
  }
}

@Controller('after-middleware')
class AfterMiddlewareController {
  constructor(private readonly service: PidService) {}

  @Get()
  async pids(@Req() request: { middlewarePid?: number; raw?: { middlewarePid?: number } }): Promise<number[]> {
    // Nest middleware gets Fastify's raw Node request.
    return [(request.raw ?? request).middlewarePid ?? -1, await this.service.pid()];
  }
}

@Module({ controllers: [AfterMiddlewareController], providers: [PidService, QueryingMiddleware] })
class MiddlewareModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(QueryingMiddleware).forRoutes(AfterMiddlewareController);
  }
}

@Controller({ path: 'per-request', scope: Scope.REQUEST })
class RequestScopedController {
  constructor(private readonly service: PidService) {}

  @Get()
  async pids(): Promise<number[]> {
    return [await this.service.pid(), await this.service.pid()];
  }
}

describe.each(ADAPTERS)('scope initializers (%s)', (adapter) => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('initializers');
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...db.options, max: 5 }), MiddlewareModule],
        controllers: [BodyController, GuardedController, RequestScopedController],
        providers: [PidService, QueryingGuard],
      },
      adapter,
    );
    pool = app.get<Pool>(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const checkedOut = (): number => pool.totalCount - pool.idleCount;

  it('keeps one client across a parsed request body', async () => {
    const { body } = await supertest(app.getHttpServer()).post('/body').send({ n: 7 }).expect(201);
    expect(body.n).toBe(7);
    expect(new Set(body.pids).size).toBe(1);
    expect(checkedOut()).toBe(0);
  });

  it('gives guards the client of the request', async () => {
    const server = app.getHttpServer();
    const [a, b] = await Promise.all([supertest(server).get('/guarded').expect(200), supertest(server).get('/guarded').expect(200)]);
    for (const { body } of [a, b]) {
      expect(body).toHaveLength(2);
      expect(body[0]).toBe(body[1]);
    }
    expect(a.body[0]).not.toBe(b.body[0]);
    expect(checkedOut()).toBe(0);
  });

  it("gives the application's own middleware the client of the request", async () => {
    const { body } = await supertest(app.getHttpServer()).get('/after-middleware').expect(200);
    expect(body[0]).toBeGreaterThan(0);
    expect(body[0]).toBe(body[1]);
    expect(checkedOut()).toBe(0);
  });

  it('scopes request-scoped controllers too', async () => {
    const { body } = await supertest(app.getHttpServer()).get('/per-request').expect(200);
    expect(new Set(body).size).toBe(1);
    expect(checkedOut()).toBe(0);
  });

  it('keeps the interceptor for the transports built after the HTTP routes (RPC, WebSocket)', async () => {
    const interceptor = app.get(ConnectionScopeInterceptor);
    expect(typeof interceptor.intercept).toBe('function');
    const service = app.get(PidService);
    let during = -1;
    // What @nestjs/microservices and @nestjs/websockets do around a message handler.
    const handler = async (): Promise<number[]> => {
      expect(ConnectionScope.current()).toBeDefined();
      const pids = await Promise.all([service.pid(), service.pid()]);
      during = checkedOut();
      return pids;
    };
    const result = await new InterceptorsConsumer().intercept([interceptor], [{ pattern: 'pids' }, {}], service, handler, handler, 'rpc');
    const pids = (await lastValueFrom(result as Observable<number[]>)) as number[];
    expect(new Set(pids).size).toBe(1);
    expect(during).toBe(1);
    expect(checkedOut()).toBe(0);
  });
});
