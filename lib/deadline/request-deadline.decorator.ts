import { UseInterceptors, type CallHandler, type ExecutionContext, type NestInterceptor } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { ConnectionScope } from '../connection/connection-scope.js';
import { validateDeadline } from './request-deadline.js';

/** Sets the deadline of the requests of one handler (see RequestDeadline()). */
class RequestDeadlineInterceptor implements NestInterceptor {
  constructor(private readonly millis: number) {}

  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    ConnectionScope.current()?.setDeadline(this.millis, 'start');
    return next.handle();
  }
}

/**
 * The requests of this handler (or of every handler of this controller) have
 * `millis` from their start for their database work, on every datasource, in
 * place of the datasources' `requestDeadlineMillis`: longer for a report,
 * shorter for a health probe. An interceptor of its own, so that only the
 * handlers decorated pay for one.
 */
export function RequestDeadline(millis: number): MethodDecorator & ClassDecorator {
  validateDeadline(millis);
  return UseInterceptors(new RequestDeadlineInterceptor(millis));
}
