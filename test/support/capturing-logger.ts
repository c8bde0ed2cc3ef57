import type { LoggerService } from '@nestjs/common';

interface Waiter {
  readonly matches: (message: string) => boolean;
  readonly resolve: (message: string) => void;
}

/**
 * A LoggerService that keeps every message and lets a test await the one it
 * expects: the module announces what it did (a connection removed, a leak
 * suspected) only through its logger, so that is what tests synchronise on,
 * and what they search for messages (or secrets that must not be there).
 */
export class CapturingLogger implements LoggerService {
  readonly messages: string[] = [];
  /** The messages logged at error level. */
  readonly errors: string[] = [];
  private readonly waiters = new Set<Waiter>();

  log(message: unknown): void {
    this.record(message);
  }
  /** Kept with what follows the message (stack, context), so that a search for a secret sees them too. */
  error(message: unknown, ...details: unknown[]): void {
    this.errors.push(this.record(message, details));
  }
  warn(message: unknown): void {
    this.record(message);
  }
  debug(message: unknown): void {
    this.record(message);
  }
  verbose(message: unknown): void {
    this.record(message);
  }
  fatal(message: unknown): void {
    this.record(message);
  }

  /** Messages matching `pattern`, in the order they were logged. */
  matching(pattern: RegExp): string[] {
    return this.messages.filter((message) => pattern.test(message));
  }

  /**
   * Resolves with the first message matching `pattern` logged at index
   * `since` or later: take `since` from `messages.length` before causing
   * what is to be logged, as it may be logged before this is called.
   */
  next(pattern: RegExp, since: number): Promise<string> {
    const earlier = this.messages.slice(since).find((message) => pattern.test(message));
    if (earlier !== undefined) return Promise.resolve(earlier);
    return new Promise((resolve) => this.waiters.add({ matches: (message) => pattern.test(message), resolve }));
  }

  private record(message: unknown, details: unknown[] = []): string {
    const text = [message, ...details].filter((part) => part !== undefined).map(textOf).join('\n');
    this.messages.push(text);
    for (const waiter of this.waiters) {
      if (!waiter.matches(text)) continue;
      this.waiters.delete(waiter);
      waiter.resolve(text);
    }
    return text;
  }
}

function textOf(part: unknown): string {
  return part instanceof Error ? (part.stack ?? part.message) : String(part);
}
