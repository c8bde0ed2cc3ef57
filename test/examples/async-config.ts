import { Injectable, Module } from '@nestjs/common';
import { PoolModule, type PoolModuleFactoryOptions, type PoolOptionsFactory } from 'nestjs-pg-pool';

/** Stands for your configuration service (for example @nestjs/config's ConfigService). */
@Injectable()
export class Settings {
  readonly databaseUrl = process.env.DATABASE_URL;
}

@Module({ providers: [Settings], exports: [Settings] })
export class SettingsModule {}

@Injectable()
export class PoolOptions implements PoolOptionsFactory {
  constructor(private readonly settings: Settings) {}
  createPoolOptions(): PoolModuleFactoryOptions {
    return { connectionString: this.settings.databaseUrl, max: 20 };
  }
}

@Module({
  imports: [
    // A factory with injected dependencies…
    PoolModule.forRootAsync({
      imports: [SettingsModule],
      inject: [Settings],
      useFactory: (settings: Settings) => ({ connectionString: settings.databaseUrl, statement_timeout: 5000 }),
    }),
    // …or a class that builds the options (useExisting takes one already provided).
    PoolModule.forRootAsync({ name: 'audit', imports: [SettingsModule], useClass: PoolOptions }),
  ],
})
export class AppModule {}
