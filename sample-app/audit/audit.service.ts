import { Injectable, type OnModuleInit } from '@nestjs/common';
import { InjectConnection, PoolConnection } from '../../lib/index.js';
import { AUDIT_DATASOURCE } from '../app.constants.js';

export interface AuditEvent {
  id: number;
  action: 'created' | 'deleted';
  note_id: number;
  at: string;
}

/** Keeps who-did-what in the second datasource, `audit`. */
@Injectable()
export class AuditService implements OnModuleInit {
  constructor(@InjectConnection(AUDIT_DATASOURCE) private readonly connection: PoolConnection) {}

  /** Creates the table on startup; safe to run on every start. */
  async onModuleInit(): Promise<void> {
    await this.connection.query(`
      CREATE TABLE IF NOT EXISTS audit_events (
        id serial PRIMARY KEY,
        action text NOT NULL,
        note_id integer NOT NULL,
        at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async record(action: AuditEvent['action'], noteId: number): Promise<void> {
    await this.connection.query('INSERT INTO audit_events (action, note_id) VALUES ($1, $2)', [action, noteId]);
  }

  async recent(): Promise<AuditEvent[]> {
    return (await this.connection.query<AuditEvent>('SELECT * FROM audit_events ORDER BY id DESC LIMIT 100')).rows;
  }
}
