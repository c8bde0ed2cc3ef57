import { Injectable, UnauthorizedException, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { setRequestSettings } from 'nestjs-pg-pool';

/** The role tenants' requests run as (see tenant-schema.sql). */
export const TENANT_ROLE = 'app_tenant';

/**
 * Runs after authentication: every query of the request, on every client
 * it uses, runs as the role `app_tenant` with `app.tenant_id` set, which the
 * tables' row-level security policies read.
 */
@Injectable()
export class TenantGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    // In a real application: the tenant of the authenticated user (a JWT claim, a session).
    const tenant = context.switchToHttp().getRequest<IncomingMessage>().headers['x-tenant'];
    if (typeof tenant !== 'string') throw new UnauthorizedException();
    setRequestSettings({ 'app.tenant_id': tenant }, { role: TENANT_ROLE });
    return true;
  }
}
