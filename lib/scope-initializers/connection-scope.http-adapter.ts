import { StreamableFile, type HttpServer } from '@nestjs/common';
import type { HttpServerDrain } from './http-server.drain.js';
import { scopeOf } from './request-scope.js';

/**
 * @internal The adapter methods through which Nest hands a route's answer over:
 * reply(response, body, status), redirect(response, status, url), render(response, view, options).
 */
export const ANSWERS = ['reply', 'redirect', 'render'] as const;
type Answer = (this: unknown, response: unknown, second: unknown, third: unknown) => unknown;

/**
 * Makes every scoped HTTP request release its clients as Nest hands its
 * answer to the adapter: middleware, guards, interceptors, the handler and
 * exception filters are done with them by then. The response's 'close',
 * which ends the scope, comes only once the answer is written, and for a
 * client that reads slowly, long after; a pooled connection held through
 * that serves nobody. An answer that is a stream (StreamableFile, an async
 * iterable, a Readable) may go on querying for as long as it is read: from
 * then on its scope holds a client only while a query or transaction of it
 * runs (ConnectionScope.holdPerQuery()). Responses written by the handler
 * itself (`@Res()`) never reach the adapter and keep their clients to the end.
 *
 * During a shutdown's drain, the answer also closes its connection (see
 * HttpServerDrain.answering()).
 *
 * This replaces the adapter's answer methods, which Nest calls for every
 * route's answer: an optimisation over holding clients until 'close' that
 * relies on Nest's adapter interface. Where a method is missing it is left
 * alone (clients then go back at 'close'); a test fails if answers stop
 * coming through them.
 */
export function releaseOnAnswer(adapter: HttpServer, drain?: HttpServerDrain): void {
  const methods = adapter as unknown as Record<(typeof ANSWERS)[number], Answer>;
  for (const name of ANSWERS) {
    const answer = methods[name];
    if (typeof answer !== 'function') continue;
    methods[name] = function (this: unknown, response, second, third) {
      drain?.answering(response);
      const scope = scopeOf(response);
      if (scope) {
        if (isStream(second)) scope.holdPerQuery();
        else scope.releaseIdleClients();
      }
      return answer.call(this, response, second, third);
    };
  }
}

function isStream(body: unknown): boolean {
  return body instanceof StreamableFile || typeof (body as { pipe?: unknown } | null | undefined)?.pipe === 'function';
}
