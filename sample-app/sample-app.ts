import { Logger, type INestApplication, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import type { SampleConfig } from './config.js';
import { resolveDatabases } from './databases/sample-databases.js';

export interface SampleApp {
  readonly app: INestApplication;
  /** Closes the application, then the embedded database if one was started. */
  close(): Promise<void>;
}

/** Picks the databases, then builds and initialises the application (not yet listening). */
export async function createSampleApp(config: SampleConfig, logger: LoggerService = new Logger('SampleApp')): Promise<SampleApp> {
  const databases = await resolveDatabases(config, logger);
  const stopEmbedded = async (): Promise<void> => databases.embedded?.stop();
  let app: INestApplication | undefined;
  try {
    app = await NestFactory.create(AppModule.forRoot(databases), { logger, abortOnError: false });
    await app.init();
  } catch (error) {
    // Report the startup failure, not a failure to clean up after it.
    await app?.close().catch(() => undefined);
    await stopEmbedded();
    throw error;
  }
  const started = app;
  return {
    app: started,
    close: async () => {
      await started.close();
      await stopEmbedded();
    },
  };
}
