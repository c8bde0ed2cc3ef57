import { connect } from 'node:net';
import type { BackendKey } from './pg-client-state.js';

// Protocol constant of a CancelRequest (PostgreSQL frontend/backend protocol, "CancelRequest").
const CANCEL_REQUEST_CODE = 80877102;
const CANCEL_TIMEOUT_MS = 2000;

/**
 * Asks the server to cancel whatever the backend is running, the way libpq's
 * PQcancel does: a fresh socket, 16 bytes, no reply, the server closes it.
 * node-postgres has no API for it. Resolves once the socket is closed (or
 * failed: a cancel is only ever best effort).
 */
export function sendCancelRequest(key: BackendKey): Promise<void> {
  return new Promise((resolve) => {
    const socket = key.host.startsWith('/')
      ? connect(`${key.host}/.s.PGSQL.${key.port}`)
      : connect(key.port, key.host);
    socket.setTimeout(CANCEL_TIMEOUT_MS, () => socket.destroy());
    socket.once('connect', () => {
      const packet = Buffer.alloc(16);
      packet.writeInt32BE(16, 0);
      packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
      packet.writeInt32BE(key.processID, 8);
      packet.writeInt32BE(key.secretKey, 12);
      // Written, not ended: the server closes the socket once it has read the
      // request. A half-close right away makes PgBouncer (1.18) drop the cancel
      // or, worse, exit on "bad client state".
      socket.write(packet);
    });
    socket.once('error', () => socket.destroy());
    socket.once('close', () => resolve());
  });
}
