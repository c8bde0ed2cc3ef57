import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { FaultAppConfig, FaultAppStats } from './fault-app.js';
import { send } from './load.js';

const LOADER = new URL('./ts-loader.mjs', import.meta.url).href;
const APP = fileURLToPath(new URL('./fault-app.ts', import.meta.url));
const START_TIMEOUT_MS = 20_000;

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * The fault application in a child process: a crash is an exit nobody asked
 * for, which `crashed` reports; `terminate()` is the SIGTERM of a real
 * shutdown. Its output is kept for the failure messages.
 */
export class AppProcess {
  readonly exited: Promise<Exit>;
  private exit: Exit | undefined;
  private stopRequested = false;

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly output: string[],
    exited: Promise<Exit>,
  ) {
    this.exited = exited.then((exit) => (this.exit = exit));
  }

  static async start(config: FaultAppConfig): Promise<AppProcess> {
    return AppProcess.spawn(APP, config);
  }

  /**
   * Another application of the suites, run the same way: `app` (a .ts file)
   * gets `config` as JSON in APP_CONFIG, after the modules of `imports` (as
   * `node --import`), and prints `{"listening":<port>}` once it serves.
   */
  static async spawn(app: string, config: unknown, imports: string[] = []): Promise<AppProcess> {
    const env: NodeJS.ProcessEnv = { ...process.env, APP_CONFIG: JSON.stringify(config) };
    delete env.NODE_OPTIONS; // Jest's --experimental-vm-modules is not wanted there
    const preload = [LOADER, ...imports].flatMap((module) => ['--import', module]);
    const child = spawn(process.execPath, [...preload, app], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    // 'close' rather than 'exit': it comes once the output is read too, with what the process printed last.
    const exited = new Promise<Exit>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${app} did not start within ${START_TIMEOUT_MS} ms:\n${output.join('\n')}`));
      }, START_TIMEOUT_MS);
      const onLine = (line: string): void => {
        output.push(line);
        const listening = /^\{"listening":(\d+)\}$/.exec(line);
        if (listening) {
          clearTimeout(timer);
          resolve(Number(listening[1]));
        }
      };
      lines(child.stdout!, onLine);
      lines(child.stderr!, onLine);
      void exited.then((exit) => {
        clearTimeout(timer);
        reject(new Error(`${app} exited (${JSON.stringify(exit)}) before serving:\n${output.join('\n')}`));
      });
    });
    return new AppProcess(child, port, output, exited);
  }

  /** True when the process ended without being asked to. */
  get crashed(): boolean {
    return this.exit !== undefined && !this.stopRequested;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  async stats(): Promise<FaultAppStats> {
    const outcome = await send(this.port, '/__stats', { boundMillis: 5000 });
    if (outcome.status !== 200) throw new Error(`/__stats answered ${outcome.kind}: ${outcome.body}`);
    return JSON.parse(outcome.body) as FaultAppStats;
  }

  /** Sends SIGTERM (graceful shutdown) and resolves with the exit and how long it took. */
  async terminate(): Promise<Exit & { millis: number }> {
    this.stopRequested = true;
    const started = Date.now();
    this.child.kill('SIGTERM');
    const exit = await this.exited;
    return { ...exit, millis: Date.now() - started };
  }

  /** Kills the process if it still runs (test cleanup). */
  async kill(): Promise<void> {
    this.stopRequested = true;
    if (this.alive) this.child.kill('SIGKILL');
    await this.exited;
  }

  /**
   * The paths of the requests the application's HTTP server accepted, as the
   * fault app prints them when it exits (see fault-app.ts); known once `exited` resolved.
   */
  received(): string[] {
    const line = [...this.output].reverse().find((text) => text.startsWith('{"received":'));
    if (line === undefined) throw new Error(`the application printed no received requests:\n${this.output.join('\n')}`);
    return (JSON.parse(line) as { received: string[] }).received;
  }

  /** Output lines matching `pattern`. */
  logged(pattern: RegExp): string[] {
    return this.output.filter((line) => pattern.test(line));
  }
}

function lines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    for (const part of parts) onLine(part);
  });
}
