import { Controller, Get } from '@nestjs/common';

/** What GET / answers: the first thing a new user opens. */
export interface SampleIndex {
  app: string;
  routes: string[];
  links: { health: string; metrics: string };
}

/** Lists the sample app's routes, with links to its health and metrics. */
@Controller()
export class RootController {
  @Get()
  index(): SampleIndex {
    return {
      app: 'nestjs-pg-pool sample: notes on a pooled, per-request PostgreSQL connection, audited in a second datasource',
      routes: [
        'GET /notes',
        'POST /notes {"title": "…", "body": "…"}',
        'GET /notes/:id',
        'DELETE /notes/:id',
        'GET /audit',
        'GET /slow/:seconds (hang up before it answers: the query is cancelled)',
        'GET /health',
        'GET /metrics',
      ],
      links: { health: '/health', metrics: '/metrics' },
    };
  }
}
