import { connect } from 'node:net';

// Jest's globalSetup: runs once before the suites, compiled on its own (no
// module mapping), so this file imports nothing of the project's.

/** Services of the machine that suites use beside PostgreSQL. */
export const SERVICES = {
  redis: { host: '127.0.0.1', port: 6379 },
  rabbitmq: { host: '127.0.0.1', port: 5672 },
} as const;
export type ServiceName = keyof typeof SERVICES;

/** Set for the workers: the services that did not accept a connection (see services.ts). */
export const UNREACHABLE = 'NPP_TEST_UNREACHABLE_SERVICES';

/** Probes every service; outside CI, records the unreachable ones. In CI they fail the run. */
export default async function globalSetup(): Promise<void> {
  const unreachable: ServiceName[] = [];
  for (const name of Object.keys(SERVICES) as ServiceName[]) {
    if (!(await accepts(SERVICES[name]))) unreachable.push(name);
  }
  if (unreachable.length > 0 && process.env.CI === 'true') {
    throw new Error(`CI needs ${unreachable.map((name) => `${name} on ${SERVICES[name].host}:${SERVICES[name].port}`).join(' and ')}`);
  }
  process.env[UNREACHABLE] = unreachable.join(',');
}

function accepts({ host, port }: { host: string; port: number }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1000 });
    const settle = (reachable: boolean): void => {
      socket.destroy();
      resolve(reachable);
    };
    socket.once('connect', () => settle(true)).once('timeout', () => settle(false)).once('error', () => settle(false));
  });
}
