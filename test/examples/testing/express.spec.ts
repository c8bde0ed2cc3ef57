import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { getConnectionToken, PoolConnection, PoolModule, PoolStatsService } from 'nestjs-pg-pool';
import supertest from 'supertest';
import { createTestDatabase, type TestDatabase } from '../../support/database.js';
import { NotesModule, NotesService } from './notes.module.js';

describe('NotesModule on Express', () => {
  let db: TestDatabase;
  let app: INestApplication;

  beforeAll(async () => {
    db = await createTestDatabase('notes_express'); // a database of this suite's own
    await db.query('CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)');
    const moduleRef = await Test.createTestingModule({
      imports: [PoolModule.forRoot({ ...db.options, max: 2 }), NotesModule],
    }).compile();
    app = await moduleRef.createNestApplication().init();
  });

  afterAll(async () => {
    await app?.close(); // drains and ends the pool: Jest exits on its own
    await db?.drop();
  });

  it('adds and lists notes over HTTP, and leaves no connection checked out', async () => {
    await supertest(app.getHttpServer()).post('/notes').send({ text: 'hello' }).expect(201);
    const { body } = await supertest(app.getHttpServer()).get('/notes').expect(200);
    expect(body).toEqual([{ id: 1, text: 'hello' }]);
    expect(app.get(PoolStatsService).get().inUse).toBe(0);
  });

  it('runs a service inside a transaction the test rolls back', async () => {
    const connection = app.get<PoolConnection>(getConnectionToken());
    const notes = app.get(NotesService);
    await connection.transaction(async (transaction) => {
      await notes.add('draft'); // joins the transaction: same client
      expect(await notes.list()).toHaveLength(2);
      await transaction.rollback();
    });
    expect(await notes.list()).toHaveLength(1);
  });
});
