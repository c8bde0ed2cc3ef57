import { Body, Controller, Get, Injectable, Module, Post } from '@nestjs/common';
import { InjectConnection, PoolConnection } from 'nestjs-pg-pool';

export interface Note {
  id: number;
  text: string;
}

@Injectable()
export class NotesService {
  constructor(@InjectConnection() private readonly connection: PoolConnection) {}

  async add(text: string): Promise<Note> {
    const { rows } = await this.connection.query<Note>('INSERT INTO notes (text) VALUES ($1) RETURNING id, text', [text]);
    return rows[0];
  }

  async list(): Promise<Note[]> {
    const { rows } = await this.connection.query<Note>('SELECT id, text FROM notes ORDER BY id');
    return rows;
  }
}

@Controller('notes')
export class NotesController {
  constructor(private readonly notes: NotesService) {}

  @Post()
  add(@Body() body: { text: string }): Promise<Note> {
    return this.notes.add(body.text);
  }

  @Get()
  list(): Promise<Note[]> {
    return this.notes.list();
  }
}

@Module({ controllers: [NotesController], providers: [NotesService] })
export class NotesModule {}
