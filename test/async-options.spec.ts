import { Injectable, Module, type INestApplicationContext } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  getConnectionToken,
  PoolConnection,
  PoolModule,
  type PoolModuleFactoryOptions,
  type PoolOptionsFactory,
} from '../lib/index.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

class DatabaseSettings {
  constructor(readonly options: PoolModuleFactoryOptions) {}
}

@Injectable()
class SettingsPoolOptions implements PoolOptionsFactory {
  constructor(private readonly settings: DatabaseSettings) {}
  createPoolOptions(name: string): PoolModuleFactoryOptions {
    return { ...this.settings.options, application_name: `npp-${name}` };
  }
}

describe('PoolModule.forRootAsync', () => {
  let db: TestDatabase;
  let SettingsModule: new () => unknown;

  beforeAll(async () => {
    db = await createTestDatabase('async');
    @Module({ providers: [{ provide: DatabaseSettings, useValue: new DatabaseSettings(db.options) }, SettingsPoolOptions], exports: [DatabaseSettings, SettingsPoolOptions] })
    class Settings {}
    SettingsModule = Settings;
  });

  afterAll(() => db?.drop());

  async function applicationName(imports: unknown[], name = 'default'): Promise<string> {
    const moduleRef = await Test.createTestingModule({ imports: imports as [] }).compile();
    const app: INestApplicationContext = await moduleRef.init();
    try {
      const connection = app.get<PoolConnection>(getConnectionToken(name));
      const { rows } = await connection.query<{ db: string; app: string }>(
        "SELECT current_database() AS db, current_setting('application_name') AS app",
      );
      expect(rows[0].db).toBe(db.name);
      return rows[0].app;
    } finally {
      await app.close();
    }
  }

  it('takes a factory with injected dependencies', async () => {
    const app = await applicationName([
      PoolModule.forRootAsync({
        name: 'analytics',
        imports: [SettingsModule],
        inject: [DatabaseSettings],
        useFactory: (settings: DatabaseSettings) => ({ ...settings.options, application_name: 'from-factory' }),
      }),
    ], 'analytics');
    expect(app).toBe('from-factory');
  });

  it('takes an options factory class (useClass)', async () => {
    @Module({ providers: [{ provide: DatabaseSettings, useValue: new DatabaseSettings(db.options) }], exports: [DatabaseSettings] })
    class OnlySettings {}
    expect(await applicationName([PoolModule.forRootAsync({ imports: [OnlySettings], useClass: SettingsPoolOptions })])).toBe(
      'npp-default',
    );
  });

  it('takes an existing options factory (useExisting)', async () => {
    expect(await applicationName([PoolModule.forRootAsync({ imports: [SettingsModule], useExisting: SettingsPoolOptions })])).toBe(
      'npp-default',
    );
  });
});
