import { DatabaseError } from 'pg';
import { NoMatchingHostError, PoolClosedError, PoolExhaustedError, PoolQueueFullError, PrimaryLostError } from '../pool.errors.js';

// Short reasons for what a ping can run into. They are what /health shows:
// fixed words, never a server message that could carry a user or host name.
const REASON_BY_CODE: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connection timeout',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  '28P01': 'authentication failed',
  '28000': 'authentication failed',
  '3D000': 'database does not exist',
  '53300': 'too many connections',
  '57P01': 'server shutting down',
  '57P02': 'server shutting down',
  '57P03': 'server not accepting connections',
  '57014': 'query cancelled',
};

// pg reports a connection lost during a query without a code. pg-pool's own
// failures never get here: the datasource turns every failed acquire into a
// PoolUnavailableError (see Datasource.describeAcquireError()).
const REASON_BY_MESSAGE: Readonly<Record<string, string>> = {
  'Connection terminated unexpectedly': 'connection lost',
};

/** A short, secret-free reason for a failed ping. */
export function describeFailure(error: unknown): string {
  if (error instanceof PoolClosedError) return 'datasource shutting down';
  if (error instanceof PoolExhaustedError || error instanceof PoolQueueFullError) return 'pool exhausted';
  // The hosts, which the error names, stay out of /health.
  if (error instanceof NoMatchingHostError) return `no host matching targetSessionAttrs '${error.targetSessionAttrs}'`;
  if (error instanceof PrimaryLostError) return 'primary lost';
  if (error instanceof Error && error.name === 'TimeoutError') return 'timeout';
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && REASON_BY_CODE[code]) return REASON_BY_CODE[code];
  if (typeof message === 'string' && REASON_BY_MESSAGE[message]) return REASON_BY_MESSAGE[message];
  if (error instanceof DatabaseError) return `database error ${error.code ?? 'without a code'}`;
  return typeof code === 'string' ? `connection failed (${code})` : 'connection failed';
}
