import { Module } from '@nestjs/common';
import { PoolModule } from '../lib/index.js';
import { NotesController } from './notes/notes.controller.js';
import { NotesService } from './notes/notes.service.js';

@Module({
  imports: [
    PoolModule.forRootAsync({
      useFactory: () => ({
        connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
        max: 10,
        application_name: 'nestjs-pg-pool-sample',
      }),
    }),
  ],
  controllers: [NotesController],
  providers: [NotesService],
})
export class AppModule {}
