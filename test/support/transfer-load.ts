import { randomBytes, randomInt } from 'node:crypto';
import { Agent, request } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { ACCOUNTS, type TransferOrder } from './bank.js';

/** One answer of the bank: the transfer's id, the HTTP status (0: no answer at all) and when it came (ms since the epoch). */
export interface Answer {
  id: string;
  status: number;
  at: number;
  /** The Retry-After header, if the answer had one. */
  retryAfter?: string;
}

/** A request with no answer after this long counts as unanswered (status 0). */
const ANSWER_TIMEOUT_MS = 15_000;
/** A client that was refused waits this long before its next transfer, so that a fast 503 does not spin. */
const PAUSE_AFTER_REFUSAL_MS = 10;

/**
 * Concurrent HTTP clients, each posting one transfer after another to the
 * bank (test/support/bank.ts) and recording every answer, until `stop()`.
 */
export class TransferLoad {
  readonly answers: Answer[] = [];
  private running = true;
  private readonly agent: Agent;
  private readonly clients: Array<Promise<void>>;
  /** Prefix of this load's transfer ids (`<run>-<client>-<sequence>`), apart from those of earlier loads on the same books. */
  readonly run = randomBytes(3).toString('hex');
  private readonly watchers = new Set<{ matches: (answer: Answer) => boolean; resolve: (answer: Answer) => void }>();

  private constructor(
    private readonly url: string,
    clients: number,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: clients });
    this.clients = Array.from({ length: clients }, (_, n) => this.client(n));
  }

  static start(url: string, clients = 16): TransferLoad {
    return new TransferLoad(url, clients);
  }

  /** Ids of the transfers answered 200. */
  acknowledged(): string[] {
    return this.answers.filter((answer) => answer.status === 200).map((answer) => answer.id);
  }

  /** Answers by status, those that came within [from, to) only when given. */
  countsByStatus(from = 0, to = Infinity): Record<string, number> {
    const counts: Record<string, number> = {};
    for (const { status, at } of this.answers) if (at >= from && at < to) counts[status] = (counts[status] ?? 0) + 1;
    return counts;
  }

  /** Resolves with the first answer from now on that `matches`. */
  next(matches: (answer: Answer) => boolean): Promise<Answer> {
    return new Promise((resolve) => this.watchers.add({ matches, resolve }));
  }

  /** Resolves once `count` more transfers have been acknowledged. */
  async acknowledgements(count: number): Promise<void> {
    for (let seen = 0; seen < count; seen++) await this.next((answer) => answer.status === 200);
  }

  /** Stops every client after its transfer in flight and waits for them. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.clients);
    this.agent.destroy();
  }

  private async client(n: number): Promise<void> {
    for (let sequence = 0; this.running; sequence++) {
      const source = randomInt(1, ACCOUNTS + 1);
      const target = ((source + randomInt(0, ACCOUNTS - 1)) % ACCOUNTS) + 1;
      const order: TransferOrder = { id: `${this.run}-${n}-${sequence}`, source, target, amount: randomInt(1, 50) };
      const answer: Answer = { id: order.id, ...(await this.post(order)), at: Date.now() };
      this.answers.push(answer);
      for (const watcher of this.watchers) {
        if (!watcher.matches(answer)) continue;
        this.watchers.delete(watcher);
        watcher.resolve(answer);
      }
      if (answer.status !== 200) await delay(PAUSE_AFTER_REFUSAL_MS);
    }
  }

  /** Posts `order`; resolves with the status (0 when no answer came) and the Retry-After header. */
  private post(order: TransferOrder): Promise<Pick<Answer, 'status' | 'retryAfter'>> {
    const body = JSON.stringify(order);
    return new Promise((resolve) => {
      const outgoing = request(
        `${this.url}/transfers`,
        { method: 'POST', agent: this.agent, timeout: ANSWER_TIMEOUT_MS, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
        (response) => {
          response.resume();
          const retryAfter = response.headers['retry-after'];
          response.on('end', () => resolve({ status: response.statusCode ?? 0, ...(retryAfter ? { retryAfter } : {}) }));
        },
      );
      outgoing.on('timeout', () => outgoing.destroy());
      outgoing.on('error', () => resolve({ status: 0 }));
      outgoing.end(body);
    });
  }
}
