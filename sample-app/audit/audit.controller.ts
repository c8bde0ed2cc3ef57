import { Controller, Get } from '@nestjs/common';
import { AuditService, type AuditEvent } from './audit.service.js';

@Controller('audit')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  recent(): Promise<AuditEvent[]> {
    return this.audit.recent();
  }
}
