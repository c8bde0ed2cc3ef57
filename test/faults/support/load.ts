import { Agent, request } from 'node:http';

/** How one HTTP request ended, from the client's side. */
export interface Outcome {
  readonly path: string;
  /**
   * `200`; `503 <error class>` or `500 <error class>` as the application
   * reports it; `refused` / `reset` when the connection was refused or cut
   * (`reset (kept-alive)` on a connection an earlier request had used);
   * `aborted` when the test hung up on purpose; `hung` when no answer came
   * within the bound.
   */
  readonly kind: string;
  readonly status?: number;
  readonly retryAfter?: string;
  /** The answer's Connection header: `close` when the server ends the connection after it. */
  readonly connection?: string;
  readonly body: string;
  /** When it was sent (Date.now()), and how long it took. */
  readonly startedAt: number;
  readonly millis: number;
}

export interface SendOptions {
  /** No answer within this is a hang: the request is dropped and counted as `hung`. */
  boundMillis: number;
  /** Hang up after this long, as a client that goes away would. */
  abortAfterMillis?: number;
  /** A keep-alive agent to send it through; by default a connection of its own. */
  agent?: Agent;
}

/** One GET, on a connection of its own unless an agent is given, classified. Never rejects. */
export function send(port: number, path: string, options: SendOptions): Promise<Outcome> {
  const startedAt = Date.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (fields: Omit<Outcome, 'path' | 'millis' | 'startedAt'>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(bound);
      clearTimeout(abort);
      resolve({ path, startedAt, millis: Date.now() - startedAt, ...fields });
    };
    const cut = (error: NodeJS.ErrnoException): void => {
      const kind = transportKind(error);
      done({ kind: kind === 'reset' && req.reusedSocket ? 'reset (kept-alive)' : kind, body: error.message });
    };
    const req = request({ host: '127.0.0.1', port, path, agent: options.agent ?? false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        const { 'retry-after': retryAfter, connection } = res.headers;
        done({
          kind: classify(status, body),
          status,
          body,
          ...(retryAfter ? { retryAfter: String(retryAfter) } : {}),
          ...(connection ? { connection } : {}),
        });
      });
      // Cut in the middle of the answer: a reset, whatever the connection.
      res.on('error', (error) => done({ kind: 'reset', body: error.message }));
    });
    const bound = setTimeout(() => {
      done({ kind: 'hung', body: `no answer within ${options.boundMillis} ms` });
      req.destroy();
    }, options.boundMillis);
    const abort =
      options.abortAfterMillis === undefined
        ? undefined
        : setTimeout(() => {
            done({ kind: 'aborted', body: '' });
            req.destroy();
          }, options.abortAfterMillis);
    req.on('error', cut);
    req.end();
  });
}

function transportKind(error: NodeJS.ErrnoException): string {
  if (error.code === 'ECONNREFUSED') return 'refused';
  return 'reset';
}

function classify(status: number, body: string): string {
  if (status === 200) return '200';
  let message = body;
  try {
    message = String((JSON.parse(body) as { message?: unknown }).message ?? body);
  } catch {
    // not JSON: an adapter's own answer
  }
  if (status === 503) {
    if (/ is exhausted: /.test(message)) return '503 PoolExhaustedError';
    if (/^Cannot connect datasource /.test(message)) return '503 DatabaseUnreachableError';
    if (/ is shutting down /.test(message)) return '503 PoolClosedError';
    if (/ refused a connection request: /.test(message)) return '503 PoolQueueFullError';
    if (/^Connection of datasource .* failed and was closed: /.test(message)) return '503 ConnectionFailedError';
    return '503 (adapter)';
  }
  if (status === 500) {
    const named = /^(\w+(?: \w{5})?): /.exec(message);
    return `500 ${named ? named[1] : 'unexplained'}`;
  }
  return String(status);
}

/** How a Load sends. */
export interface LoadOptions {
  workers: number;
  boundMillis: number;
  paceMillis: number;
  /** Each worker keeps its connection between requests (an http.Agent with keepAlive), as a browser or a proxy does. */
  keepAlive?: boolean;
  /** A worker stops once a connection was refused: the server has stopped listening. */
  untilRefused?: boolean;
  /** A worker stops after this many requests. */
  maxPerWorker?: number;
}

/**
 * Keeps `workers` clients each sending one request after the other (paced
 * `paceMillis` apart) until `stop()` (or as the options say).
 * `until()` resolves once the outcomes so far satisfy a condition, so a test
 * waits for "20 successes since the restart" rather than for a length of time.
 */
export class Load {
  readonly outcomes: Outcome[] = [];
  private stopping = false;
  private running: Promise<void>[] = [];
  private readonly waiters = new Set<{ test: () => boolean; resolve: () => void }>();
  private sequence = 0;

  constructor(
    private readonly port: number,
    private readonly path: (n: number) => string,
    private readonly options: LoadOptions,
  ) {}

  start(): this {
    this.running = Array.from({ length: this.options.workers }, () => this.worker());
    return this;
  }

  /** Stops sending and resolves with every outcome once the requests in flight end. */
  async stop(): Promise<Outcome[]> {
    this.stopping = true;
    await Promise.all(this.running);
    return this.outcomes;
  }

  /** Outcomes recorded from index `since` on that satisfy `match`. */
  count(match: (outcome: Outcome) => boolean, since = 0): number {
    let n = 0;
    for (let i = since; i < this.outcomes.length; i++) if (match(this.outcomes[i])) n++;
    return n;
  }

  /** Resolves when `test()` holds, checked after each outcome; rejects after `timeoutMillis`. */
  until(test: () => boolean, what: string, timeoutMillis = 20_000): Promise<void> {
    if (test()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter = {
        test,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`timed out waiting for ${what}; outcomes so far: ${JSON.stringify(tally(this.outcomes))}`));
      }, timeoutMillis);
      this.waiters.add(waiter);
    });
  }

  private async worker(): Promise<void> {
    const { boundMillis, keepAlive, untilRefused, maxPerWorker = Infinity } = this.options;
    const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: 1 }) : undefined;
    for (let sent = 0; !this.stopping && sent < maxPerWorker; sent++) {
      const outcome = await send(this.port, this.path(++this.sequence), { boundMillis, ...(agent ? { agent } : {}) });
      this.outcomes.push(outcome);
      for (const waiter of this.waiters) {
        if (!waiter.test()) continue;
        this.waiters.delete(waiter);
        waiter.resolve();
      }
      if (untilRefused && outcome.kind === 'refused') break;
      if (this.options.paceMillis > 0) await new Promise((resolve) => setTimeout(resolve, this.options.paceMillis));
    }
    agent?.destroy();
  }
}

/** Outcomes counted by kind, most frequent first. */
export function tally(outcomes: readonly Outcome[]): Record<string, number> {
  const counts = new Map<string, number>();
  for (const { kind } of outcomes) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return Object.fromEntries([...counts].sort((a, b) => b[1] - a[1]));
}
