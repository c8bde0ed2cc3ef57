import {
  Inject,
  Injectable,
  Module,
  Scope,
  type CallHandler,
  type DynamicModule,
  type ExecutionContext,
  type NestInterceptor,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { APP_INTERCEPTOR, HttpAdapterHost, REQUEST } from '@nestjs/core';
import { InjectDataSource, TypeOrmModule } from '@nestjs/typeorm';
import { sql as drizzleSql } from 'drizzle-orm';
import { ClsModule, ClsService } from 'nestjs-cls';
import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import { finalize, type Observable } from 'rxjs';
import { DataSource } from 'typeorm';
import { ConnectionScope, InjectConnection, InjectPool, PoolConnection, PoolModule, setRequestSettings } from '../../lib/index.js';
import { DrizzleModule, InjectDrizzle, type DrizzleDatabase } from '../../lib/drizzle/index.js';
import { InjectKysely, KyselyModule } from '../../lib/kysely/index.js';
import { PoolTelemetryModule } from '../../lib/otel/index.js';
import { ANSWERS } from '../../lib/scope-initializers/connection-scope.http-adapter.js';
import { config, dbConfig, SQL } from '../config.js';
import { aroundOtherWork, BenchController, PG_POOL, QUERY_SERVICE, type QueryService } from './common.js';
import { experiments } from './experiments.js';

export interface Contender {
  id: string;
  label: string;
  /** The root module of this contender's app. */
  module(): DynamicModule;
  /**
   * Where the server finds the `pg.Pool` whose client hold times it records:
   * the module's, the hand-written `PG_POOL` provider's, TypeORM's; absent
   * for a contender without a pool.
   */
  pool?: 'module' | 'provider' | 'typeorm';
}

function poolConfig(): pg.PoolConfig {
  return { ...dbConfig(), max: config.poolSize };
}

function app(providers: DynamicModule['providers'], imports: DynamicModule['imports'] = []): DynamicModule {
  @Module({})
  class BenchAppModule {}
  return { module: BenchAppModule, imports, controllers: [BenchController], providers };
}

/** A hand-written singleton `pg.Pool` provider, ended at shutdown. */
const poolProvider = { provide: PG_POOL, useFactory: () => new pg.Pool(poolConfig()) };

@Injectable()
class PoolEnder implements OnApplicationShutdown {
  constructor(@Inject(PG_POOL) private readonly pool: pg.Pool) {}
  async onApplicationShutdown(): Promise<void> {
    await this.pool.end();
  }
}

// (1) nestjs-pg-pool: @InjectConnection(), scoped and released by the module.
@Injectable()
class PgPoolModuleService implements QueryService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}
  async selectOne(): Promise<unknown> {
    return (await this.connection.query(SQL)).rows[0];
  }
  selectTwice(): Promise<unknown> {
    return aroundOtherWork(() => this.selectOne());
  }
}

// (1) through Kysely: the same SELECT 1, built by Kysely and run on the request's connection.
@Injectable()
class KyselyService implements QueryService {
  constructor(@InjectKysely() private readonly db: Kysely<unknown>) {}
  async selectOne(): Promise<unknown> {
    return (await sql.raw(SQL).execute(this.db)).rows[0];
  }
  selectTwice(): Promise<unknown> {
    return aroundOtherWork(() => this.selectOne());
  }
}

// (1) for a tenant: the request's settings set first, as a guard would (see setRequestSettings()).
@Injectable()
class TenantSettingsService extends PgPoolModuleService {
  override selectOne(): Promise<unknown> {
    setRequestSettings({ 'app.tenant_id': '42' });
    return super.selectOne();
  }
}

// (1) through Drizzle: the same statement, as Drizzle's db.execute() sends it on the scoped connection.
@Injectable()
class DrizzleService implements QueryService {
  // The statement built once, as an application's query builders are: the bench measures running it.
  private readonly statement = drizzleSql.raw(SQL);
  constructor(@InjectDrizzle() private readonly db: DrizzleDatabase) {}
  async selectOne(): Promise<unknown> {
    return (await this.db.execute(this.statement)).rows[0];
  }
  selectTwice(): Promise<unknown> {
    return aroundOtherWork(() => this.selectOne());
  }
}

// Ablation: the scoped connection in a scope of its own that ends with the query.
@Injectable()
class InnerScopeService implements QueryService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}
  async selectOne(): Promise<unknown> {
    return (await ConnectionScope.run(() => this.connection.query(SQL))).rows[0];
  }
  selectTwice(): Promise<unknown> {
    return aroundOtherWork(() => this.selectOne());
  }
}

// Ablation: the scoped connection as it was before requests handed their client back as their
// answer goes to the adapter: held until the response closes. releaseOnAnswer() wraps the
// adapter's methods on the instance, so deleting those wrappers brings back the prototype's.
@Injectable()
class HoldUntilResponseCloses implements OnApplicationBootstrap {
  constructor(private readonly adapterHost: HttpAdapterHost) {}
  onApplicationBootstrap(): void {
    const adapter = this.adapterHost.httpAdapter as unknown as Record<string, unknown>;
    for (const method of ANSWERS) delete adapter[method];
  }
}

// Ablation: the module's pool used directly (pool.query), in the request scope the module opens and nobody uses.
@Injectable()
class ModulePoolService implements QueryService {
  constructor(@InjectPool() private readonly pool: pg.Pool) {}
  async selectOne(): Promise<unknown> {
    return (await this.pool.query(SQL)).rows[0];
  }
  selectTwice(): Promise<unknown> {
    return aroundOtherWork(() => this.selectOne());
  }
}

// (2) singleton pg.Pool, pool.query per query: the floor.
@Injectable()
class SingletonPoolService implements QueryService {
  constructor(@Inject(PG_POOL) private readonly pool: pg.Pool) {}
  async selectOne(): Promise<unknown> {
    return (await this.pool.query(SQL)).rows[0];
  }
  selectTwice(): Promise<unknown> {
    return aroundOtherWork(() => this.selectOne());
  }
}

// (3) Nest REQUEST scope: a request-scoped provider checks a client out,
// an interceptor hands it back when the handler is done.
const PG_CLIENT = Symbol('PG_CLIENT');
const CHECKED_OUT = Symbol('checkedOutClient');
type WithClient = { [CHECKED_OUT]?: pg.PoolClient };

const requestClientProvider = {
  provide: PG_CLIENT,
  scope: Scope.REQUEST,
  inject: [PG_POOL, REQUEST],
  useFactory: async (pool: pg.Pool, request: WithClient): Promise<pg.PoolClient> => {
    const client = await pool.connect();
    request[CHECKED_OUT] = client;
    return client;
  },
};

@Injectable()
class ReleaseRequestClientInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const request = context.switchToHttp().getRequest<WithClient>();
    return next.handle().pipe(
      finalize(() => {
        const client = request[CHECKED_OUT];
        request[CHECKED_OUT] = undefined;
        client?.release();
      }),
    );
  }
}

@Injectable()
class RequestScopedService implements QueryService {
  constructor(@Inject(PG_CLIENT) private readonly client: pg.PoolClient) {}
  async selectOne(): Promise<unknown> {
    return (await this.client.query(SQL)).rows[0];
  }
  selectTwice(): Promise<unknown> {
    return aroundOtherWork(() => this.selectOne());
  }
}

// (4) @nestjs/typeorm: DataSource.query.
@Injectable()
class TypeOrmService implements QueryService {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}
  async selectOne(): Promise<unknown> {
    return ((await this.dataSource.query(SQL)) as unknown[])[0];
  }
  selectTwice(): Promise<unknown> {
    return aroundOtherWork(() => this.selectOne());
  }
}

// (5) nestjs-cls holding a per-request client: borrowed on the first query,
// handed back when the response closes (set up by ClsMiddleware).
const CLS_CLIENT = 'pgClient';

class ClsClientHolder {
  private pending: Promise<pg.PoolClient> | undefined;
  private released = false;
  constructor(private readonly pool: pg.Pool) {}
  get(): Promise<pg.PoolClient> {
    if (this.released) return Promise.reject(new Error('request already ended'));
    return (this.pending ??= this.pool.connect());
  }
  release(): void {
    if (this.released) return;
    this.released = true;
    this.pending?.then((client) => client.release(), () => undefined);
  }
}

@Injectable()
class ClsClientService implements QueryService {
  constructor(private readonly cls: ClsService) {}
  async selectOne(): Promise<unknown> {
    const client = await this.cls.get<ClsClientHolder>(CLS_CLIENT).get();
    return (await client.query(SQL)).rows[0];
  }
  selectTwice(): Promise<unknown> {
    return aroundOtherWork(() => this.selectOne());
  }
}

// (6) no pool: a new connection per request, kept for both queries of two-queries-5ms.
@Injectable()
class ConnectPerRequestService implements QueryService {
  selectOne(): Promise<unknown> {
    return this.connected(async (client) => (await client.query(SQL)).rows[0]);
  }
  selectTwice(): Promise<unknown> {
    return this.connected((client) => aroundOtherWork(async () => (await client.query(SQL)).rows[0]));
  }
  private async connected<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client(dbConfig());
    await client.connect();
    try {
      return await work(client);
    } finally {
      await client.end();
    }
  }
}

export const CONTENDERS: Contender[] = [
  {
    id: 'pg-pool-module',
    label: 'nestjs-pg-pool @InjectConnection',
    pool: 'module',
    module: () =>
      app([{ provide: QUERY_SERVICE, useClass: PgPoolModuleService }], [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0 })]),
  },
  {
    id: 'singleton-pool',
    label: 'singleton pg.Pool provider',
    pool: 'provider',
    module: () => app([poolProvider, PoolEnder, { provide: QUERY_SERVICE, useClass: SingletonPoolService }]),
  },
  {
    id: 'request-scope',
    label: 'REQUEST-scoped client + interceptor',
    pool: 'provider',
    module: () =>
      app([
        poolProvider,
        PoolEnder,
        requestClientProvider,
        { provide: APP_INTERCEPTOR, useClass: ReleaseRequestClientInterceptor },
        { provide: QUERY_SERVICE, useClass: RequestScopedService },
      ]),
  },
  {
    id: 'typeorm',
    label: '@nestjs/typeorm DataSource.query',
    pool: 'typeorm',
    module: () => {
      const c = dbConfig();
      return app(
        [{ provide: QUERY_SERVICE, useClass: TypeOrmService }],
        [
          TypeOrmModule.forRoot({
            type: 'postgres',
            host: c.host,
            port: c.port,
            username: c.user,
            ...(c.password ? { password: String(c.password) } : {}),
            database: c.database,
            poolSize: config.poolSize,
            entities: [],
            synchronize: false,
            logging: false,
            retryAttempts: 0,
          }),
        ],
      );
    },
  },
  {
    id: 'nestjs-cls',
    label: 'nestjs-cls per-request client',
    pool: 'provider',
    module: () => {
      const pool = new pg.Pool(poolConfig());
      return app(
        [{ provide: PG_POOL, useValue: pool }, PoolEnder, { provide: QUERY_SERVICE, useClass: ClsClientService }],
        [
          ClsModule.forRoot({
            global: true,
            middleware: {
              mount: true,
              setup: (cls: ClsService, _req: unknown, res: { once(event: 'close', fn: () => void): void }) => {
                const holder = new ClsClientHolder(pool);
                cls.set(CLS_CLIENT, holder);
                res.once('close', () => holder.release());
              },
            },
          }),
        ],
      );
    },
  },
  {
    id: 'connect-per-request',
    label: 'new pg.Client per request',
    module: () => app([{ provide: QUERY_SERVICE, useClass: ConnectPerRequestService }]),
  },
];

/** Variants and ablations of (1) and (2), run only when named in BENCH_CONTENDERS. */
export const EXPERIMENTS: Contender[] = [
  {
    id: 'pg-pool-module-per-query',
    label: "(1) with clientHold: 'query'",
    pool: 'module',
    module: () =>
      app([{ provide: QUERY_SERVICE, useClass: PgPoolModuleService }], [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0, clientHold: 'query' })]),
  },
  {
    id: 'pg-pool-module-deadline',
    label: '(1) with requestDeadlineMillis: 30000',
    pool: 'module',
    module: () =>
      app([{ provide: QUERY_SERVICE, useClass: PgPoolModuleService }], [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0, requestDeadlineMillis: 30_000 })]),
  },
  {
    id: 'pg-pool-module-settings',
    label: '(1) with setRequestSettings() in every request',
    pool: 'module',
    module: () => app([{ provide: QUERY_SERVICE, useClass: TenantSettingsService }], [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0 })]),
  },
  {
    id: 'pg-pool-module-drizzle',
    label: '(1) through Drizzle (nestjs-pg-pool/drizzle)',
    pool: 'module',
    module: () =>
      app([{ provide: QUERY_SERVICE, useClass: DrizzleService }], [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0 }), DrizzleModule.forRoot()]),
  },
  {
    id: 'pg-pool-module-kysely',
    label: '(1) through Kysely (nestjs-pg-pool/kysely)',
    pool: 'module',
    module: () =>
      app([{ provide: QUERY_SERVICE, useClass: KyselyService }], [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0 }), KyselyModule.forRoot()]),
  },
  ...experiments(() => [poolProvider, PoolEnder], SingletonPoolService),
  {
    id: 'x-inner-scope',
    label: '(1) in a scope that ends with the query',
    pool: 'module',
    module: () => app([{ provide: QUERY_SERVICE, useClass: InnerScopeService }], [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0 })]),
  },
  {
    id: 'x-held-to-close',
    label: '(1) holding its client until the response closes',
    pool: 'module',
    module: () =>
      app(
        [{ provide: QUERY_SERVICE, useClass: PgPoolModuleService }, HoldUntilResponseCloses],
        [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0 })],
      ),
  },
  {
    id: 'x-otel-no-sdk',
    label: '(1) with nestjs-pg-pool/otel imported, no OpenTelemetry SDK registered',
    pool: 'module',
    module: () =>
      app(
        [{ provide: QUERY_SERVICE, useClass: PgPoolModuleService }],
        [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0 }), PoolTelemetryModule.forRoot()],
      ),
  },
  {
    id: 'x-singleton-acquire-timeout',
    label: '(2) with the pool settings the module adds (connectionTimeoutMillis 10 s, keepAlive)',
    pool: 'provider',
    module: () =>
      app([
        { provide: PG_POOL, useFactory: () => new pg.Pool({ ...poolConfig(), connectionTimeoutMillis: 10_000, keepAlive: true }) },
        PoolEnder,
        { provide: QUERY_SERVICE, useClass: SingletonPoolService },
      ]),
  },
  {
    id: 'x-module-pool-query',
    label: '(2) through the module: its pool.query, its request scope',
    pool: 'module',
    module: () => app([{ provide: QUERY_SERVICE, useClass: ModulePoolService }], [PoolModule.forRoot({ ...poolConfig(), retryAttempts: 0 })]),
  },
];

export function contender(id: string): Contender {
  const found = [...CONTENDERS, ...EXPERIMENTS].find((c) => c.id === id);
  if (!found) throw new Error(`unknown contender "${id}" (known: ${[...CONTENDERS, ...EXPERIMENTS].map((c) => c.id).join(', ')})`);
  return found;
}
