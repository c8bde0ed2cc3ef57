import { Injectable, type LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  DatabaseUnreachableError,
  DuplicateDatasourceError,
  InjectConnection,
  InvalidPoolOptionsError,
  PoolConnection,
  PoolModule,
  type PoolModuleOptions,
} from '../lib/index.js';
import { serverConfig } from './support/database.js';
import { CapturingLogger } from './support/capturing-logger.js';

const SECRET = 'Sup3r-Secret-Passw0rd';

async function bootstrap(imports: unknown[], providers: unknown[] = [], logger?: LoggerService): Promise<void> {
  const moduleRef = await Test.createTestingModule({ imports: imports as [], providers: providers as [] })
    .setLogger(logger ?? new CapturingLogger())
    .compile();
  try {
    await moduleRef.init();
  } finally {
    await moduleRef.close();
  }
}

describe('invalid options fail at bootstrap with a typed error', () => {
  it.each<[string, PoolModuleOptions, string]>([
    ['max below 1', { max: 0 }, 'max'],
    ['min above max', { max: 2, min: 3 }, 'min'],
    ['a negative timeout', { connectionTimeoutMillis: -1 }, 'connectionTimeoutMillis'],
    ['a negative statement timeout', { statement_timeout: -5 }, 'statement_timeout'],
    ['a negative drain timeout', { drainTimeoutMillis: -1 }, 'drainTimeoutMillis'],
    ['a negative request deadline', { requestDeadlineMillis: -1 }, 'requestDeadlineMillis'],
    ['an empty name', { name: '' }, 'name'],
    ['an unknown hang-up policy', { queriesAfterHangUp: 'ignore' as 'run' }, 'queriesAfterHangUp'],
    ['a password neither a string nor a function', { password: 1234 as unknown as string }, 'password'],
    ['a bootWithoutDatabase that is not a boolean', { bootWithoutDatabase: 'yes' as unknown as boolean }, 'bootWithoutDatabase'],
  ])('%s', async (_case, options, option) => {
    const failure = bootstrap([PoolModule.forRoot({ ...serverConfig(), ...options })]);
    await expect(failure).rejects.toBeInstanceOf(InvalidPoolOptionsError);
    await expect(failure).rejects.toMatchObject({ option });
  });

  it('two datasources with the same name', async () => {
    const failure = bootstrap([
      PoolModule.forRoot({ ...serverConfig(), name: 'twin', application_name: 'a' }),
      PoolModule.forRoot({ ...serverConfig(), name: 'twin', application_name: 'b' }),
    ]);
    await expect(failure).rejects.toBeInstanceOf(DuplicateDatasourceError);
    await expect(failure).rejects.toThrow(/"twin"/);
  });

  it.each(['after', 'before'])('a datasource registered %s one with a replica, named like that replica', async (order) => {
    const withReplica = PoolModule.forRoot({ ...serverConfig(), name: 'main', replicas: [serverConfig()] });
    const lookalike = PoolModule.forRoot({ ...serverConfig(), name: 'main (replica 1)' });
    const failure = bootstrap(order === 'after' ? [withReplica, lookalike] : [lookalike, withReplica]);
    await expect(failure).rejects.toBeInstanceOf(DuplicateDatasourceError);
    await expect(failure).rejects.toThrow(/"main \(replica 1\)"/);
  });

  it('a connection injected under a name no datasource has', async () => {
    @Injectable()
    class NeedsMissing {
      constructor(@InjectConnection('missing') readonly connection: PoolConnection) {}
    }
    await expect(bootstrap([PoolModule.forRoot(serverConfig())], [NeedsMissing])).rejects.toThrow(/PoolConnection\(missing\)/);
  });
});

describe('the connection budget', () => {
  it('warns once at startup when max alone exceeds what the server accepts', async () => {
    const logger = new CapturingLogger();
    await bootstrap([PoolModule.forRoot({ ...serverConfig(), name: 'big', max: 5000 })], [], logger);
    const warnings = logger.messages.filter((line) => line.includes('max (5000) exceeds'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('"big"');
  });

  it('stays quiet when max fits', async () => {
    const logger = new CapturingLogger();
    await bootstrap([PoolModule.forRoot({ ...serverConfig(), max: 5 })], [], logger);
    expect(logger.messages.filter((line) => line.includes('exceeds'))).toEqual([]);
  });
});

describe('an unreachable database', () => {
  const unreachable = (options: PoolModuleOptions): PoolModuleOptions => ({
    ...options,
    name: 'orders',
    retryAttempts: 2,
    retryDelay: 10,
  });

  it('fails the bootstrap naming datasource, host, port and database, after the retries', async () => {
    const logger = new CapturingLogger();
    const failure = bootstrap(
      [PoolModule.forRoot(unreachable({ host: '127.0.0.1', port: 1, user: 'app', password: SECRET, database: 'shop' }))],
      [],
      logger,
    );
    await expect(failure).rejects.toBeInstanceOf(DatabaseUnreachableError);
    const error = (await failure.catch((e: unknown) => e)) as DatabaseUnreachableError;
    expect(error.message).toContain('"orders"');
    expect(error.message).toContain('127.0.0.1:1/shop');
    expect(error.attempts).toBe(3);
    expect(error.code).toBe('ECONNREFUSED');
    expect(logger.messages.filter((line) => line.includes('retrying'))).toHaveLength(2);
    expect(JSON.stringify(error) + error.message + error.stack + logger.messages.join('\n')).not.toContain(SECRET);
  });

  it('never shows the password of a connection string', async () => {
    const logger = new CapturingLogger();
    const connectionString = `postgres://app:${SECRET}@127.0.0.1:1/shop`;
    const error = (await bootstrap([PoolModule.forRoot(unreachable({ connectionString }))], [], logger).catch(
      (e: unknown) => e,
    )) as DatabaseUnreachableError;
    expect(error).toBeInstanceOf(DatabaseUnreachableError);
    expect(error.message).toContain('app@127.0.0.1:1/shop');
    const everything = error.message + error.stack + JSON.stringify(error) + logger.messages.join('\n');
    expect(everything).not.toContain(SECRET);
    expect(everything).not.toContain(connectionString);
  });
});
