import { connect } from 'node:net';
import type { BackendKey } from './pg-client-state.js';

// Protocol constant of a CancelRequest (PostgreSQL frontend/backend protocol, "CancelRequest").
const CANCEL_REQUEST_CODE = 80877102;
/** How long the server has to act on a cancel request before its target connection is given up on. */
export const CANCEL_CONFIRM_TIMEOUT_MS = 2000;

/**
 * Asks the server to cancel whatever the backend is running, the way libpq's
 * PQcancel does: a fresh socket, 16 bytes, no reply. node-postgres has no API
 * for it.
 *
 * PostgreSQL cancels per backend, not per query, and acts on the request
 * (signals the backend) before it closes that socket: once the server has
 * closed it, a later query on the backend is safe from it. Resolves true
 * then, or when the request never reached the server (no connection); false
 * when it may still be acted on (no close within the timeout, or an error
 * after it was sent): the connection it targets must then not be reused.
 */
export function sendCancelRequest(key: BackendKey): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = key.host.startsWith('/')
      ? connect(`${key.host}/.s.PGSQL.${key.port}`)
      : connect(key.port, key.host);
    let sent = false;
    let closedByServer = false;
    socket.setTimeout(CANCEL_CONFIRM_TIMEOUT_MS, () => socket.destroy());
    socket.once('connect', () => {
      const packet = Buffer.alloc(16);
      packet.writeInt32BE(16, 0);
      packet.writeInt32BE(CANCEL_REQUEST_CODE, 4);
      packet.writeInt32BE(key.processID, 8);
      packet.writeInt32BE(key.secretKey, 12);
      // Written, not ended: the server closes the socket once it has acted on
      // the request. A half-close right away makes PgBouncer (1.18) drop the
      // cancel or, worse, exit on "bad client state".
      socket.write(packet);
      sent = true;
    });
    // The server's end of the stream (read in flowing mode, or 'end' never
    // comes): it read the request and is done with it.
    socket.resume();
    socket.once('end', () => {
      closedByServer = true;
      socket.destroy();
    });
    socket.once('error', () => socket.destroy());
    socket.once('close', () => resolve(closedByServer || !sent));
  });
}
