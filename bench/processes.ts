import { fork, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { config } from './config.js';
import { CLIENT_TIMES_FLAG, type ClientTimes, type FromServer, type LoadRequest, type LoadResult, type ServerStats, type ToServer } from './protocol.js';

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

/** Waits for the next IPC message of `type` from `child`, failing after `timeoutMs`. */
function nextMessage<T extends { type?: string }>(child: ChildProcess, accept: (m: T) => boolean, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => finish(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
    const onMessage = (message: T): void => {
      if ((message as { type?: string }).type === 'error') finish(new Error(`${what}: ${(message as unknown as { message: string }).message}`));
      else if (accept(message)) finish(undefined, message);
    };
    const onExit = (code: number | null): void => finish(new Error(`process exited (${code}) while waiting for ${what}`));
    function finish(error?: Error, message?: T): void {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(message as T);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

export interface StartOptions {
  /** Run under valgrind's callgrind, its output to this file (see `ServerProcess.start`). */
  callgrindOut?: string;
  /** Record the server's client hold and query times over each measured window (see client-times.ts). */
  clientTimes?: boolean;
}

/** A server process under test (bench/server.ts). */
export class ServerProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  /** The server's process id (valgrind's, which runs node in the same process, under callgrind). */
  get pid(): number {
    return this.child.pid!;
  }

  /**
   * Starts `kind` on `adapter`; with `callgrindOut`, under valgrind's callgrind
   * with its counting off until `callgrind_control -i on` (valgrind alone makes
   * node about 5 times slower, counting about 50 times). Each dump asked for by
   * `callgrind_control -d` goes to `<callgrindOut>.<n>-<thread>`, one file per
   * thread (`-01` is the main thread, where JavaScript runs). Threads take
   * fair turns (see instructions.ts).
   */
  static async start(kind: string, adapter: string, options: StartOptions = {}): Promise<ServerProcess> {
    // The server profiles its measured window itself (node:inspector) when asked.
    if (config.cpuProfDir) mkdirSync(config.cpuProfDir, { recursive: true });
    const underCallgrind = options.callgrindOut
      ? { execPath: 'valgrind', execArgv: ['--tool=callgrind', '-q', '--instr-atstart=no', '--separate-threads=yes', '--fair-sched=yes', `--callgrind-out-file=${options.callgrindOut}`, config.node] }
      : { execPath: config.node };
    const child = fork(here('./server.js'), [kind, adapter, ...(options.clientTimes ? [CLIENT_TIMES_FLAG] : [])], { ...underCallgrind, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const startMs = options.callgrindOut ? 600_000 : 30_000;
    const ready = await nextMessage<Extract<FromServer, { type: 'ready' }>>(child, (m) => m.type === 'ready', startMs, `${kind}/${adapter} to start`);
    return new ServerProcess(child, ready.port);
  }

  private request<T extends FromServer>(message: ToServer, type: T['type'], timeoutMs = 30_000): Promise<T> {
    const reply = nextMessage<T>(this.child, (m) => m.type === type, timeoutMs, `"${type}" from the server`);
    this.child.send(message);
    return reply;
  }

  async begin(): Promise<void> {
    await this.request({ type: 'begin' }, 'begun');
  }

  async end(): Promise<{ cpuUs: number; cpuUserUs: number; elapsedMs: number } & ClientTimes> {
    const ended = await this.request<Extract<FromServer, { type: 'ended' }>>({ type: 'end' }, 'ended');
    return { cpuUs: ended.cpuUserUs + ended.cpuSystemUs, cpuUserUs: ended.cpuUserUs, elapsedMs: ended.elapsedMs, hold: ended.hold, query: ended.query };
  }

  async stats(gc = false): Promise<ServerStats> {
    const { type: _type, ...stats } = await this.request<Extract<FromServer, { type: 'stats' }>>({ type: 'stats', gc }, 'stats');
    return stats;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.send({ type: 'shutdown' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
}

/** The autocannon process (bench/load.ts), kept for the whole run. */
export class LoadProcess {
  private constructor(private readonly child: ChildProcess) {}

  static start(): LoadProcess {
    return new LoadProcess(fork(here('./load.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  }

  run(request: LoadRequest): Promise<LoadResult> {
    const reply = new Promise<LoadResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('autocannon did not answer')), (request.duration + 60) * 1000);
      this.child.once('message', (message: { ok: boolean; result?: LoadResult; message?: string }) => {
        clearTimeout(timer);
        if (message.ok && message.result) resolve(message.result);
        else reject(new Error(message.message));
      });
    });
    this.child.send(request);
    return reply;
  }

  stop(): void {
    this.child.disconnect();
  }
}

/** Runs a command to completion, bounded in time; resolves with its stdout. */
export function runCommand(command: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Where `command` is on PATH, if it is. */
export async function commandPath(command: string): Promise<string | undefined> {
  const { code, stdout } = await runCommand('sh', ['-c', `command -v ${command}`], 5000);
  return code === 0 ? stdout.trim() : undefined;
}
