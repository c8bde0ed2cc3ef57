import { StreamableFile, type HttpServer } from '@nestjs/common';
import { ConnectionScope } from '../connection/connection-scope.js';

/**
 * @internal The adapter methods through which Nest hands a route's answer over:
 * reply(response, body, status), redirect(response, status, url), render(response, view, options).
 */
export const ANSWERS = ['reply', 'redirect', 'render'] as const;
type Answer = (this: unknown, response: unknown, second: unknown, third: unknown) => unknown;

/**
 * Makes the requests the server scoped (connection-scope.http-server.ts)
 * hand their clients back as Nest hands their answer to the adapter:
 * middleware, guards, interceptors, the handler and exception filters are
 * done with them by then. The response's 'close', which ends the scope,
 * comes only once the answer is written, and for a client that reads slowly,
 * long after; a pooled connection held through that serves nobody. Answers
 * that are streams (StreamableFile, async iterables, Readables) may still
 * read from the client, and keep it until 'close'. So do responses written
 * by the handler itself (`@Res()`), which never reach the adapter.
 */
export function handBackOnAnswer(adapter: HttpServer): void {
  const methods = adapter as unknown as Record<(typeof ANSWERS)[number], Answer>;
  for (const name of ANSWERS) {
    const answer = methods[name];
    methods[name] = function (this: unknown, response, second, third) {
      if (!isStream(second)) ConnectionScope.of(response)?.handBack();
      return answer.call(this, response, second, third);
    };
  }
}

function isStream(body: unknown): boolean {
  return body instanceof StreamableFile || typeof (body as { pipe?: unknown } | null | undefined)?.pipe === 'function';
}
