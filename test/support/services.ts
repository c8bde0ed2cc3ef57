import { SERVICES, UNREACHABLE, type ServiceName } from './global-setup.js';

export { SERVICES, type ServiceName };

/** `it`, or `it.skip` with a printed reason when `service` was not reachable at the start of the run (global-setup.ts). */
export function whenReachable(service: ServiceName, what: string): jest.It {
  if (!(process.env[UNREACHABLE] ?? '').split(',').includes(service)) return it;
  const { host, port } = SERVICES[service];
  process.stdout.write(`[skipped] ${what}: nothing answers on ${host}:${port} (${service})\n`);
  return it.skip;
}
