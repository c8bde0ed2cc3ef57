import { AvailabilityLog } from '../lib/datasource/availability-log.js';
import { AuthenticationFailedError, DatabaseUnreachableError } from '../lib/index.js';

// What a datasource says of its state, line by line, when connection
// attempts overlap a change: those begun before it belong to the state
// before (a rotation under load has logins with the old password in flight).

const wrongPassword = (): AuthenticationFailedError =>
  new AuthenticationFailedError('default', 'app@db:5432/app', 'password authentication failed for user "app"', '28P01');
const refusedConnection = (): DatabaseUnreachableError =>
  new DatabaseUnreachableError('default', 'app@db:5432/app', 'connect ECONNREFUSED', 'ECONNREFUSED');

function record(): { log: AvailabilityLog; lines: string[] } {
  const lines: string[] = [];
  return { log: new AvailabilityLog((line) => lines.push(`error ${line}`), (line) => lines.push(`warn ${line}`)), lines };
}

it('a refused password: one line as it starts failing, one as it works again', () => {
  const { log, lines } = record();
  for (let n = 0; n < 3; n++) log.refused(wrongPassword());
  log.served(0); // an idle connection of before still serves: not over
  log.connected(performance.now());
  log.served(0);
  expect(lines).toEqual([
    expect.stringMatching(/^error fails authentication; .*: Cannot connect datasource "default" .*: authentication failed: password authentication failed/),
    expect.stringMatching(/^warn serves again after \d+ ms failing authentication; 3 connection request\(s\) were refused meanwhile$/),
  ]);
});

it('a connection begun before the outage does not end it', () => {
  const { log, lines } = record();
  const begunBefore = performance.now() - 1;
  log.refused(wrongPassword());
  log.connected(begunBefore);
  log.served(0);
  expect(lines).toHaveLength(1);
});

it('an attempt begun before the outage ended, refused after, opens no other', () => {
  const { log, lines } = record();
  const begunDuring = performance.now();
  log.refused(wrongPassword());
  log.connected(performance.now());
  log.served(0);
  log.refused(wrongPassword(), begunDuring);
  log.refused(wrongPassword(), performance.now() + 1);
  expect(lines.map((line) => line.split(';')[0])).toEqual(['error fails authentication', expect.stringMatching(/^warn serves again/), 'error fails authentication']);
});

it('a change of cause is a line of its own: unreachable, then refusing the password', () => {
  const { log, lines } = record();
  log.refused(refusedConnection());
  log.refused(wrongPassword());
  log.refused(wrongPassword());
  expect(lines.map((line) => line.split(';')[0])).toEqual(['error is unreachable', 'error fails authentication']);
});

it('a boot without the database: one line at startup, one when it serves, counting only the refused acquisitions', () => {
  const { log, lines } = record();
  log.startedWithout(refusedConnection());
  log.failed(refusedConnection(), performance.now()); // a background retry
  log.refused(refusedConnection());
  log.connected(performance.now());
  log.served(0);
  expect(lines).toEqual([
    expect.stringMatching(/^error is unreachable at startup; the application starts without it and connects in the background, connections are refused with 503 until it answers: /),
    expect.stringMatching(/^warn serves again after \d+ ms unreachable since startup; 1 connection request\(s\) were refused meanwhile$/),
  ]);
});
