import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { configFromEnv } from './config.js';
import { createSampleApp } from './sample-app.js';

async function bootstrap(): Promise<void> {
  const config = configFromEnv(process.env);
  const { app } = await createSampleApp(config);
  // Ctrl-C / SIGTERM: the pools wait for the clients in use, then close.
  app.enableShutdownHooks();
  await app.listen(config.port);
  new Logger('SampleApp').log(`Listening on http://localhost:${config.port}: /, /notes, /audit, /health, /metrics`);
}

bootstrap().catch((error: unknown) => {
  new Logger('SampleApp').error(error instanceof Error ? error.message : String(error));
  process.exitCode = 1;
});
