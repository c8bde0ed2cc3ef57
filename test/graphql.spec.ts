import { ApolloDriver, type ApolloDriverConfig } from '@nestjs/apollo';
import type { INestApplication } from '@nestjs/common';
import { GraphQLModule, Parent, Query, ResolveField, Resolver } from '@nestjs/graphql';
import type { Pool } from 'pg';
import supertest from 'supertest';
import { ConnectionScope, getPoolToken, PoolModule } from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';
import { ADAPTERS, createHttpApp } from './support/http-app.js';
import { FirstService, SecondService } from './support/pid-services.js';

const TYPE_DEFS = `
  type Pids { query: [Int!]!, field: Int!, scoped: Boolean! }
  type Query { pids: Pids! }
`;

interface Pids {
  query: number[];
  scoped: boolean;
}

@Resolver('Pids')
class PidsResolver {
  constructor(
    private readonly first: FirstService,
    private readonly second: SecondService,
  ) {}

  /** Two queries through two services in the query resolver... */
  @Query('pids')
  async pids(): Promise<Pids> {
    return { query: [await this.first.pid(), await this.second.pid()], scoped: ConnectionScope.current() !== undefined };
  }

  /** ...and one more in a field resolver, which GraphQL runs after it: one request, one backend. */
  @ResolveField('field')
  async field(@Parent() _parent: Pids): Promise<number> {
    return this.first.pid();
  }
}

describe.each(ADAPTERS)('GraphQL resolvers over HTTP (%s, Apollo)', (adapter) => {
  let db: TestDatabase;
  let app: INestApplication;
  let pool: Pool;

  beforeAll(async () => {
    db = await createTestDatabase('graphql');
    app = await createHttpApp(
      {
        imports: [PoolModule.forRoot({ ...db.options, max: 8 }), GraphQLModule.forRoot<ApolloDriverConfig>({ driver: ApolloDriver, typeDefs: TYPE_DEFS })],
        providers: [PidsResolver, FirstService, SecondService],
      },
      adapter,
    );
    pool = app.get<Pool>(getPoolToken());
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  it('runs every operation on one backend, its query and field resolvers alike, and takes every client back', async () => {
    const server = app.getHttpServer();
    const answers = await Promise.all(
      Array.from({ length: 6 }, () => supertest(server).post('/graphql').send({ query: '{ pids { query field scoped } }' }).expect(200)),
    );
    for (const { body } of answers) {
      const { query, field, scoped } = (body as { data: { pids: Pids & { field: number } } }).data.pids;
      expect(scoped).toBe(true);
      expect(new Set([...query, field]).size).toBe(1);
    }
    expect(pool.totalCount - pool.idleCount).toBe(0);
  });
});
