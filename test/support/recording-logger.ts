import type { LoggerService } from '@nestjs/common';

/** Keeps every line the application logs, to look for messages (or secrets) in them. */
export class RecordingLogger implements LoggerService {
  readonly lines: string[] = [];
  log = (message: unknown): void => void this.lines.push(String(message));
  error = (message: unknown, ...rest: unknown[]): void => void this.lines.push([message, ...rest].map(String).join(' '));
  warn = (message: unknown): void => void this.lines.push(String(message));
  debug = (message: unknown): void => void this.lines.push(String(message));
  verbose = (message: unknown): void => void this.lines.push(String(message));
}
