import 'reflect-metadata';
import { ConsoleLogger, type INestApplication } from '@nestjs/common';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { getPoolToken } from '../lib/index.js';
import type { Datasource } from '../lib/datasource/datasource.js';
import { getDatasourceToken } from '../lib/pool.utils.js';
import { configFromEnv } from '../sample-app/config.js';
import { ClientTimesRecorder } from './client-times.js';
import { config, databaseUrl, dbConfig, SQL } from './config.js';
import { aroundOtherWork, createApp, PG_POOL, type AdapterName } from './contenders/common.js';
import { contender, type Contender } from './contenders/index.js';
import { CLIENT_TIMES_FLAG, type FromServer, type ToServer } from './protocol.js';

/**
 * One server under load, in a process of its own: `node server.js <kind> <adapter> [--client-times]`,
 * where kind is a contender id, `raw` (node:http + pg.Pool) or `sample-app`.
 * Tells the orchestrator its port, and reports CPU time, its pool's client hold
 * times and memory over IPC.
 */
interface Running {
  port: number;
  pool: pg.Pool | undefined;
  datasource: Datasource | undefined;
  close(): Promise<void>;
}

const send = (message: FromServer): void => void process.send?.(message);

async function startRaw(): Promise<Running> {
  const pool = new pg.Pool({ ...dbConfig(), max: config.poolSize });
  const answer = (res: ServerResponse, rows: unknown): void => {
    const body = JSON.stringify(rows);
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  const selectOne = async (): Promise<unknown> => (await pool.query(SQL)).rows[0];
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/') {
      res.writeHead(404).end();
      return;
    }
    const fail = (): void => void res.writeHead(500).end();
    if (config.handler === 'one-query') pool.query(SQL).then((result) => answer(res, result.rows[0]), fail);
    else aroundOtherWork(selectOne).then((rows) => answer(res, rows), fail);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    pool,
    datasource: undefined,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await pool.end();
    },
  };
}

/** The pool of `app`, found where its contender says it is. */
function poolOf(app: INestApplication, where: Contender['pool']): pg.Pool | undefined {
  // app.get() of a missing token logs an error: ask only for what this contender has.
  switch (where) {
    case 'module':
      return app.get<pg.Pool>(getPoolToken());
    case 'provider':
      return app.get<pg.Pool>(PG_POOL);
    case 'typeorm':
      // TypeORM's Postgres driver keeps its pg.Pool as `master`.
      return (app.get(DataSource).driver as unknown as { master: pg.Pool }).master;
    default:
      return undefined;
  }
}

async function startNest(app: INestApplication, pool: Contender['pool']): Promise<Running> {
  app.enableShutdownHooks();
  await app.listen(0, '127.0.0.1');
  const server = app.getHttpServer() as Server;
  return {
    port: (server.address() as AddressInfo).port,
    pool: poolOf(app, pool),
    datasource: pool === 'module' ? app.get<Datasource>(getDatasourceToken()) : undefined,
    close: async () => {
      server.closeAllConnections?.();
      await app.close();
    },
  };
}

async function start(kind: string, adapter: AdapterName): Promise<Running> {
  if (kind === 'raw') return startRaw();
  if (kind === 'sample-app') {
    // The sample app's own module on the bench database (and its audit database beside it), as its main.ts builds it.
    const { AppModule } = await import('../sample-app/app.module.js');
    const { resolveDatabases } = await import('../sample-app/databases/sample-databases.js');
    const databases = await resolveDatabases(configFromEnv({ DATABASE_URL: databaseUrl() }), new ConsoleLogger({ logLevels: ['warn', 'error'] }));
    return startNest(await createApp(AppModule.forRoot(databases), adapter), 'module');
  }
  const chosen = contender(kind);
  return startNest(await createApp(chosen.module(), adapter), chosen.pool);
}

async function main(): Promise<void> {
  const [kind = 'pg-pool-module', adapter = 'express', ...flags] = process.argv.slice(2);
  // Only where a measured window reads them: not under callgrind, whose counts would include them.
  const clientTimes = flags.includes(CLIENT_TIMES_FLAG) ? new ClientTimesRecorder() : undefined;
  const running = await start(kind, adapter as AdapterName);
  if (running.pool) clientTimes?.watch(running.pool);
  let cpuStart = process.cpuUsage();
  let timeStart = process.hrtime.bigint();
  const gc = exposeGc();
  const profiler = config.cpuProfDir ? windowProfiler(config.cpuProfDir) : undefined;

  process.on('message', (message: ToServer) => {
    switch (message.type) {
      case 'begin':
        profiler?.start();
        clientTimes?.reset();
        cpuStart = process.cpuUsage();
        timeStart = process.hrtime.bigint();
        send({ type: 'begun' });
        break;
      case 'end': {
        const cpu = process.cpuUsage(cpuStart);
        const elapsedMs = Number(process.hrtime.bigint() - timeStart) / 1e6;
        profiler?.stop(`${kind}-${adapter}-${Date.now()}.cpuprofile`);
        send({ type: 'ended', cpuUserUs: cpu.user, cpuSystemUs: cpu.system, elapsedMs, ...(clientTimes?.snapshot() ?? { hold: null, query: null }) });
        break;
      }
      case 'stats': {
        if (message.gc) {
          gc();
          gc();
        }
        const memory = process.memoryUsage();
        const pool = running.pool;
        send({
          type: 'stats',
          rss: memory.rss,
          heapUsed: memory.heapUsed,
          heapTotal: memory.heapTotal,
          checkedOut: pool ? pool.totalCount - pool.idleCount : null,
          leased: running.datasource ? running.datasource.leasedCount : null,
        });
        break;
      }
      case 'shutdown':
        running.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
        break;
    }
  });
  send({ type: 'ready', port: running.port });
}

/**
 * A V8 CPU profile of the measured window only (begin → end), written to
 * `dir`, so that samples divide by the requests of that window. Inspector
 * calls are queued in order; the profile is written before the next message.
 */
function windowProfiler(dir: string): { start(): void; stop(name: string): void } {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.setSamplingInterval', { interval: 200 });
  return {
    start: () => session.post('Profiler.start'),
    stop: (name) =>
      session.post('Profiler.stop', (error, result) => {
        if (!error) writeFileSync(join(dir, name), JSON.stringify(result.profile));
      }),
  };
}

/** `global.gc` when node runs with --expose-gc, else one made on the fly. */
function exposeGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

main().catch((error: unknown) => {
  send({ type: 'error', message: error instanceof Error ? error.stack ?? error.message : String(error) });
  setTimeout(() => process.exit(1), 100);
});
