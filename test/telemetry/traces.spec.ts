import { fileURLToPath } from 'node:url';
import { SpanKind } from '@opentelemetry/api';
import { AppProcess } from '../faults/support/app-process.js';
import { send } from '../faults/support/load.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { ADAPTERS } from '../support/http-app.js';
import type { ReportedSpan, TraceAppConfig } from './trace-app.js';

const APP = fileURLToPath(new URL('./trace-app.ts', import.meta.url));
const TRACING = new URL('./tracing.ts', import.meta.url).href;

/** How many tagged queries each route runs. */
const QUERIES = { plain: 3, transaction: 4, run: 2 } as const;
type Route = keyof typeof QUERIES;

// The application runs in a child process started as a traced application is, with
// `node --import <tracing setup>`: the instrumentations patch modules as Node loads
// them, which Jest's own module loader would not let them do.
describe.each(ADAPTERS)('OpenTelemetry traces through the request scope (%s)', (adapter) => {
  let db: TestDatabase;
  let app: AppProcess | undefined;

  beforeAll(async () => {
    db = await createTestDatabase('traces');
  });

  afterEach(async () => {
    await app?.kill();
  });

  afterAll(async () => {
    await db?.drop();
  });

  async function start(max: number): Promise<AppProcess> {
    const config: TraceAppConfig = { adapter, pool: { ...db.options, max } };
    app = await AppProcess.spawn(APP, config, [TRACING]);
    return app;
  }

  async function get(port: number, path: string): Promise<void> {
    const outcome = await send(port, path, { boundMillis: 10_000 });
    if (outcome.status !== 200) throw new Error(`${path} answered ${outcome.kind}: ${outcome.body}`);
  }

  /** Checks that every tagged query span of each request is in that request's trace, under its server span. */
  async function expectQueriesUnderTheirRequests(port: number, requests: Array<[Route, string]>): Promise<void> {
    const outcome = await send(port, '/__spans', { boundMillis: 10_000 });
    const spans = JSON.parse(outcome.body) as ReportedSpan[];
    const byId = new Map(spans.map((span) => [span.spanId, span]));
    const rootOf = (span: ReportedSpan): ReportedSpan => {
      let current = span;
      while (current.parentSpanId && byId.has(current.parentSpanId)) current = byId.get(current.parentSpanId)!;
      return current;
    };
    for (const [route, id] of requests) {
      const server = spans.find((span) => span.kind === SpanKind.SERVER && span.text.endsWith(`/${route}/${id}`));
      expect(server).toBeDefined();
      const queries = spans.filter((span) => span.kind === SpanKind.CLIENT && span.text.includes(`/* r${id} `));
      expect(queries).toHaveLength(QUERIES[route]);
      for (const query of queries) {
        expect(query.parentSpanId).toBeDefined();
        expect(query.traceId).toBe(server!.traceId);
        expect(rootOf(query).spanId).toBe(server!.spanId);
      }
    }
  }

  it('puts each query span under the span of the request that ran it, for concurrent requests, in transactions and in ConnectionScope.run()', async () => {
    const { port } = await start(8);
    const requests: Array<[Route, string]> = [];
    for (let n = 0; n < 6; n++) for (const route of Object.keys(QUERIES) as Route[]) requests.push([route, `${route}${n}`]);
    await Promise.all(requests.map(([route, id]) => get(port, `/${route}/${id}`)));
    await expectQueriesUnderTheirRequests(port, requests);
  });

  it('keeps the parent when the request had to wait for a connection (pool saturated)', async () => {
    const { port } = await start(1);
    const requests: Array<[Route, string]> = Array.from({ length: 6 }, (_, n) => ['plain', `wait${n}`]);
    await Promise.all(requests.map(([route, id]) => get(port, `/${route}/${id}`)));
    await expectQueriesUnderTheirRequests(port, requests);
  });
});
