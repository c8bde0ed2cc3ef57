import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import { PoolModule, PoolStatsService } from 'nestjs-pg-pool';
import { createTestDatabase, type TestDatabase } from '../../support/database.js';
import { itWhenInjectLoads } from '../../support/fastify-inject.js';
import { NotesModule } from './notes.module.js';

describe('NotesModule on Fastify', () => {
  let db: TestDatabase;
  let app: NestFastifyApplication;

  beforeAll(async () => {
    db = await createTestDatabase('notes_fastify');
    await db.query('CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 2 }), NotesModule],
    }).compile();
    app = moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter());
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  itWhenInjectLoads('adds and lists notes through app.inject(), and leaves no connection checked out', async () => {
    const added = await app.inject({ method: 'POST', url: '/notes', payload: { text: 'hello' } });
    expect(added.statusCode).toBe(201);
    const listed = await app.inject({ method: 'GET', url: '/notes' });
    expect(listed.json()).toEqual([{ id: 1, text: 'hello' }]);
    expect(app.get(PoolStatsService).get().inUse).toBe(0);
  });
});
