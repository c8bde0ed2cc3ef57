import { jest } from '@jest/globals';
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
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { Pool } from 'pg';
import { lastValueFrom, type Observable } from 'rxjs';
import supertest from 'supertest';
import { ConnectionScope, ConnectionScopeInterceptor, getPoolToken, InjectConnection, PoolConnection, PoolModule } from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { Deferred } from './support/deferred.js';
import { injectLoads } from './support/fastify-inject.js';
import { ADAPTERS, createHttpApp, listeningPort } from './support/http-app.js';

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
  async body(@Body() input: { n: number; padding?: string }): Promise<{ n: number; pids: number[]; scoped: boolean }> {
    return { n: input.n, pids: [await this.service.pid(), await this.service.pid()], scoped: ConnectionScope.current() !== undefined };
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
  use(request: { middlewarePid?: number; middlewareScoped?: boolean }, _response: unknown, next: (error?: unknown) => void): void {
    request.middlewareScoped = ConnectionScope.current() !== undefined;
    this.service.pid().then((pid) => {
      request.middlewarePid = pid;
      next();
    }, next);
  }
}

interface MiddlewareMarks {
  middlewarePid?: number;
  middlewareScoped?: boolean;
}

@Controller('after-middleware')
class AfterMiddlewareController {
  constructor(private readonly service: PidService) {}

  @Get()
  async pids(@Req() request: MiddlewareMarks & { raw?: MiddlewareMarks }): Promise<{ scoped: boolean; pids: number[] }> {
    // Nest middleware gets Fastify's raw Node request.
    const marks = request.raw ?? request;
    return { scoped: marks.middlewareScoped === true, pids: [marks.middlewarePid ?? -1, await this.service.pid()] };
  }
}

@Controller('late-body')
class LateBodyController {
  constructor(private readonly service: PidService) {}

  @Post()
  async pids(@Body() input: { n: number }): Promise<{ n: number; pids: number[]; scoped: boolean }> {
    return { n: input.n, pids: [await this.service.pid(), await this.service.pid()], scoped: ConnectionScope.current() !== undefined };
  }
}

@Module({ controllers: [AfterMiddlewareController, LateBodyController], providers: [PidService, QueryingMiddleware] })
class MiddlewareModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(QueryingMiddleware).forRoutes(AfterMiddlewareController);
  }
}

/** POSTs `body` to /late-body of `app` in two parts: the second once its server has handed the request to the application. */
async function postInTwoParts(app: INestApplication, body: object): Promise<{ status: number; body: { n: number; pids: number[]; scoped: boolean } }> {
  const port = await listeningPort(app);
  const server = app.getHttpServer() as Server;
  const headersIn = new Deferred();
  const signal = (): void => headersIn.resolve();
  server.on('request', signal);
  const payload = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      { host: '127.0.0.1', port, path: '/late-body', method: 'POST', headers: { 'content-type': 'application/json', 'content-length': payload.length } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    request.on('error', reject);
    request.write(payload.subarray(0, 5));
    // The rest arrives in a socket read of its own, after the application started on the request.
    void headersIn.promise.then(() => {
      server.off('request', signal);
      request.end(payload.subarray(5));
    });
  });
}

/** Middleware the application mounts itself with `app.use()`, before the module's: it notes whether it ran in a scope. */
function markAppUseScoped(request: { appUseScoped?: boolean }, _response: unknown, next: () => void): void {
  request.appUseScoped = ConnectionScope.current() !== undefined;
  next();
}

@Controller('app-use')
class AppUseController {
  @Get()
  scoped(@Req() request: { appUseScoped?: boolean; raw?: { appUseScoped?: boolean } }): { scoped: boolean } {
    return { scoped: (request.raw ?? request).appUseScoped === true };
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
        controllers: [BodyController, GuardedController, RequestScopedController, AppUseController],
        providers: [PidService, QueryingGuard],
      },
      adapter,
      (created) => created.use(markAppUseScoped),
    );
    pool = app.get<Pool>(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  const checkedOut = (): number => pool.totalCount - pool.idleCount;

  it('keeps one client across a parsed request body', async () => {
    // Larger than one socket read (64 KiB): the end of the body arrives in a later read, outside the request's async context.
    const { body } = await supertest(app.getHttpServer()).post('/body').send({ n: 7, padding: 'x'.repeat(90_000) }).expect(201);
    expect(body.n).toBe(7);
    expect(body.scoped).toBe(true);
    expect(new Set(body.pids).size).toBe(1);
    expect(checkedOut()).toBe(0);
  });

  it('keeps one client when the body arrives after the request reached the application', async () => {
    const { status, body } = await postInTwoParts(app, { n: 5 });
    expect(status).toBe(201);
    expect(body).toMatchObject({ n: 5, scoped: true });
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
    const answers = await Promise.all([1, 2, 3].map(() => supertest(app.getHttpServer()).get('/after-middleware').expect(200)));
    for (const { body } of answers) {
      expect(body.scoped).toBe(true);
      expect(body.pids[0]).toBeGreaterThan(0);
      expect(body.pids[0]).toBe(body.pids[1]);
    }
    expect(checkedOut()).toBe(0);
  });

  it('scopes request-scoped controllers too', async () => {
    const { body } = await supertest(app.getHttpServer()).get('/per-request').expect(200);
    expect(new Set(body).size).toBe(1);
    expect(checkedOut()).toBe(0);
  });

  it("opens the scope in Nest's request hook, before middleware mounted with app.use()", async () => {
    const { body } = await supertest(app.getHttpServer()).get('/app-use').expect(200);
    expect(body).toEqual({ scoped: true });
  });

  describe(adapter === 'fastify' ? 'through app.inject()' : 'through the Express app handed to a server of its own', () => {
    // What a serverless adapter does with the Express app; what Nest's docs test Fastify apps with.
    let other: Server | undefined;
    beforeAll(async () => {
      if (adapter === 'fastify') return;
      other = createServer(app.getHttpAdapter().getInstance());
      await new Promise<void>((resolve) => other!.listen(0, '127.0.0.1', resolve));
    });
    afterAll(async () => {
      if (other) await new Promise((resolve) => other!.close(resolve));
    });

    /** Sends a request past the application's own server; answers status and parsed body. */
    async function bypassing(method: 'GET' | 'POST', url: string, payload?: object): Promise<{ status: number; body: unknown }> {
      if (adapter === 'fastify') {
        const fastify = app.getHttpAdapter().getInstance() as { inject(options: object): Promise<{ statusCode: number; json(): unknown }> };
        const response = await fastify.inject({ method, url, payload });
        return { status: response.statusCode, body: response.json() };
      }
      const response = method === 'POST' ? await supertest(other!).post(url).send(payload) : await supertest(other!).get(url);
      return { status: response.status, body: response.body };
    }

    const loadable = adapter === 'express' || injectLoads('Fastify inject() path');
    (loadable ? it : it.skip)('keeps one client across a parsed body, a guard and a request-scoped controller, per request', async () => {
      const [posted, ...guarded] = await Promise.all([
        bypassing('POST', '/body', { n: 3 }),
        bypassing('GET', '/guarded'),
        bypassing('GET', '/guarded'),
        bypassing('GET', '/guarded'),
      ]);
      expect(posted).toMatchObject({ status: 201, body: { n: 3, scoped: true } });
      expect(new Set((posted.body as { pids: number[] }).pids).size).toBe(1);
      for (const { status, body } of guarded) {
        expect(status).toBe(200);
        expect((body as number[])[0]).toBe((body as number[])[1]);
      }
      const perRequest = await bypassing('GET', '/per-request');
      expect(new Set(perRequest.body as number[]).size).toBe(1);
      expect(checkedOut()).toBe(0);
    });

    (loadable ? it : it.skip)("gives the application's own middleware the client of the request", async () => {
      const answers = await Promise.all([1, 2, 3].map(() => bypassing('GET', '/after-middleware')));
      for (const { status, body } of answers) {
        expect(status).toBe(200);
        const { scoped, pids } = body as { scoped: boolean; pids: number[] };
        expect(scoped).toBe(true);
        expect(pids[0]).toBeGreaterThan(0);
        expect(pids[0]).toBe(pids[1]);
      }
      expect(checkedOut()).toBe(0);
    });
  });

  it('runs no interceptor of the module on HTTP routes (Nest builds no interceptor pipeline for them)', async () => {
    const intercept = jest.spyOn(ConnectionScopeInterceptor.prototype, 'intercept');
    try {
      await supertest(app.getHttpServer()).get('/guarded').expect(200);
      await supertest(app.getHttpServer()).post('/body').send({ n: 1 }).expect(201);
      await supertest(app.getHttpServer()).get('/per-request').expect(200);
    } finally {
      intercept.mockRestore();
    }
    expect(intercept).not.toHaveBeenCalled();
  });

  it('scopes a handler called through the interceptor, as the transports do (RPC, WebSocket)', async () => {
    const interceptor = new ConnectionScopeInterceptor();
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
