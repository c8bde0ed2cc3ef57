import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { PoolModule } from 'nestjs-pg-pool';
import { rollbackEachTest } from 'nestjs-pg-pool/testing';
import supertest from 'supertest';
import { createTestDatabase, type TestDatabase } from '../../support/database.js';
import { NotesModule } from './notes.module.js';

describe('NotesModule, each test rolled back', () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase('notes_rollback');
    await db.query('CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 2 }), NotesModule],
    }).compile();
    app = await moduleRef.createNestApplication().init();
  });

  afterAll(async () => {
    await app?.close();
    await db?.drop();
  });

  // Every query of the app, HTTP requests included, runs in one transaction per test, undone after it.
  rollbackEachTest(() => app);

  it('adds a note', async () => {
    await supertest(app.getHttpServer()).post('/notes').send({ text: 'hello' }).expect(201);
    await supertest(app.getHttpServer()).get('/notes').expect(200, [{ id: 1, text: 'hello' }]);
  });

  it('starts from an empty table again', async () => {
    await supertest(app.getHttpServer()).get('/notes').expect(200, []);
  });
});
