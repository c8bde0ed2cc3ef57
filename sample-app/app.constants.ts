import { DEFAULT_DATASOURCE_NAME } from '../lib/index.js';

export const AUDIT_DATASOURCE = 'audit';

/** Every datasource of the app, as /health checks them. */
export const DATASOURCES = [DEFAULT_DATASOURCE_NAME, AUDIT_DATASOURCE] as const;
