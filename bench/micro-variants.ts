/** The microbenchmark's variants, each run by micro-worker.ts in a process of its own. */
export const VARIANTS = {
  'pool.connect+release': 'pg.Pool: connect() + release()',
  'scope.acquire+release': 'ConnectionScope.run(() => connection.getClient())',
  'pool.query': "pg.Pool: query('SELECT 1')",
  'scope.query': "ConnectionScope.run(() => connection.query('SELECT 1'))",
  'connection.query': "connection.query('SELECT 1') outside a scope",
} as const;
export type Variant = keyof typeof VARIANTS;
