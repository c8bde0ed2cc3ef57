import type { PGlite } from '@electric-sql/pglite';
import type { PGLiteSocketServer } from '@electric-sql/pglite-socket';

// Above the sum of the sample's pool sizes, plus room for cancel requests.
const MAX_CONNECTIONS = 32;

/**
 * PostgreSQL compiled to WebAssembly (PGlite), in memory, served over TCP by
 * its socket server so that node-postgres connects to it like to any server.
 * Several connections share the one database; while one is inside a
 * transaction the others wait, so it suits a demo, not a concurrency test.
 */
export class EmbeddedPostgres {
  private constructor(
    private readonly db: PGlite,
    private readonly server: PGLiteSocketServer,
    /** `host:port` it listens on. */
    readonly address: string,
  ) {}

  /** Starts it on a free port of 127.0.0.1. The packages load only here, when they are needed. */
  static async start(): Promise<EmbeddedPostgres> {
    const [{ PGlite }, { PGLiteSocketServer }] = await Promise.all([
      import('@electric-sql/pglite'),
      import('@electric-sql/pglite-socket'),
    ]);
    const db = await PGlite.create();
    const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: MAX_CONNECTIONS });
    try {
      await server.start();
    } catch (error) {
      await db.close();
      throw error;
    }
    return new EmbeddedPostgres(db, server, server.getServerConn());
  }

  get url(): string {
    return `postgres://postgres@${this.address}/postgres`;
  }

  async stop(): Promise<void> {
    await this.server.stop();
    await this.db.close();
  }
}
