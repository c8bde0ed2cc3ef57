import { BadRequestException, Body, Controller, Delete, Get, HttpCode, Param, ParseIntPipe, Post } from '@nestjs/common';
import { NotesService, type Note } from './notes.service.js';

@Controller('notes')
export class NotesController {
  constructor(private readonly notes: NotesService) {}

  @Get()
  list(): Promise<Note[]> {
    return this.notes.list();
  }

  @Get(':id')
  get(@Param('id', ParseIntPipe) id: number): Promise<Note> {
    return this.notes.get(id);
  }

  @Post()
  create(@Body() input: { title?: unknown; body?: unknown }): Promise<Note> {
    if (typeof input?.title !== 'string' || input.title === '') throw new BadRequestException('title must be a non-empty string');
    return this.notes.create(input.title, typeof input.body === 'string' ? input.body : '');
  }

  @Delete(':id')
  @HttpCode(204)
  remove(@Param('id', ParseIntPipe) id: number): Promise<void> {
    return this.notes.remove(id);
  }
}
