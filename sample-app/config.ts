/** Where the sample app finds its databases and which port it listens on. */
export interface SampleConfig {
  /** `DATABASE_URL`: the default datasource. Unset: the local server below, or an embedded database. */
  databaseUrl?: string;
  /** `AUDIT_DATABASE_URL`: the `audit` datasource. Unset: database `<default's>_audit` on the same server, created if missing. */
  auditDatabaseUrl?: string;
  /** `PORT`. Default 3000. */
  port: number;
  /** `LOCAL_POSTGRES` (`host:port`): the server looked for when `DATABASE_URL` is unset. Default `127.0.0.1:5432`. */
  localPostgres: { host: string; port: number };
}

export function configFromEnv(env: NodeJS.ProcessEnv): SampleConfig {
  const [host, port] = (env.LOCAL_POSTGRES || '127.0.0.1:5432').split(':');
  return {
    databaseUrl: env.DATABASE_URL || undefined,
    auditDatabaseUrl: env.AUDIT_DATABASE_URL || undefined,
    port: portNumber('PORT', env.PORT || '3000'),
    localPostgres: { host, port: portNumber('LOCAL_POSTGRES', port ?? '5432') },
  };
}

function portNumber(variable: string, value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`${variable}: "${value}" has no valid port number`);
  return port;
}
