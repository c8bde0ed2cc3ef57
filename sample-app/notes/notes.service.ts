import { Injectable, NotFoundException, type OnModuleInit } from '@nestjs/common';
import { InjectConnection, PoolConnection } from '../../lib/index.js';
import { AuditService } from '../audit/audit.service.js';

export interface Note {
  id: number;
  title: string;
  body: string;
  created_at: string;
}

@Injectable()
export class NotesService implements OnModuleInit {
  constructor(
    @InjectConnection() private readonly connection: PoolConnection,
    private readonly audit: AuditService,
  ) {}

  /** Creates the table on startup; safe to run on every start. */
  async onModuleInit(): Promise<void> {
    await this.connection.query(`
      CREATE TABLE IF NOT EXISTS notes (
        id serial PRIMARY KEY,
        title text NOT NULL,
        body text NOT NULL DEFAULT '',
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
  }

  async list(): Promise<Note[]> {
    return (await this.connection.query<Note>('SELECT * FROM notes ORDER BY id')).rows;
  }

  async get(id: number): Promise<Note> {
    const { rows } = await this.connection.query<Note>('SELECT * FROM notes WHERE id = $1', [id]);
    if (!rows[0]) throw new NotFoundException(`note ${id} does not exist`);
    return rows[0];
  }

  async create(title: string, body = ''): Promise<Note> {
    const { rows } = await this.connection.query<Note>('INSERT INTO notes (title, body) VALUES ($1, $2) RETURNING *', [title, body]);
    await this.audit.record('created', rows[0].id);
    return rows[0];
  }

  async remove(id: number): Promise<void> {
    const { rowCount } = await this.connection.query('DELETE FROM notes WHERE id = $1', [id]);
    if (!rowCount) throw new NotFoundException(`note ${id} does not exist`);
    await this.audit.record('deleted', id);
  }
}
