import { Catch, Module, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { APP_FILTER, HttpAdapterHost } from '@nestjs/core';
import { PoolUnavailableError } from 'nestjs-pg-pool';

/** Answers the module's 503s with their full message, for clients allowed to see the server's name. */
@Catch(PoolUnavailableError)
export class PoolUnavailableDetailFilter implements ExceptionFilter {
  constructor(private readonly adapterHost: HttpAdapterHost) {}

  catch(error: PoolUnavailableError, host: ArgumentsHost): void {
    const { httpAdapter } = this.adapterHost;
    const body = { statusCode: error.statusCode, error: error.name, message: error.message };
    // Retry-After is already on the response: the module set it when the connection was refused.
    httpAdapter.reply(host.switchToHttp().getResponse(), body, error.statusCode);
  }
}

@Module({ providers: [{ provide: APP_FILTER, useClass: PoolUnavailableDetailFilter }] })
export class UnavailableDetailModule {}
