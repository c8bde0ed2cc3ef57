import { Logger } from '@nestjs/common';
import { currentContext } from '../context/request-context.js';
import { DEFAULT_DATASOURCE_NAME, POOL_LOGGER_CONTEXT } from '../pool.constants.js';

/** Work to run once a transaction has committed (see afterCommit()). */
export type AfterCommitWork = () => unknown;

/**
 * The hooks of one outermost transaction that committed, run by whoever
 * began it once its client is free of it (see run-transaction.ts): a hook's
 * own queries must not wait for the transaction whose end it waits for.
 */
export class CommittedHooks {
  private readonly work: AfterCommitWork[] = [];

  add(hooks: readonly AfterCommitWork[]): void {
    this.work.push(...hooks);
  }

  /**
   * Runs each hook in turn, in the context of the code that began the
   * transaction (its queries run as that code's others do: in a request,
   * outside the committed transaction, or inside the one a `requiresNew`
   * transaction was begun from), logging a failure rather than throwing it
   * into work that committed.
   */
  async run(warn: (message: string) => void): Promise<void> {
    for (const hook of this.work) await runHook(hook, warn);
  }
}

const logger = new Logger(POOL_LOGGER_CONTEXT);

async function runHook(hook: AfterCommitWork, warn: (message: string) => void): Promise<void> {
  try {
    await hook();
  } catch (error) {
    warn(`an afterCommit() hook failed (${error instanceof Error ? error.message : String(error)}); its transaction had committed`);
  }
}

/**
 * Runs `work` once the outermost transaction running on `datasource`
 * (default `'default'`) commits: never after a rollback (a savepoint rolled
 * back drops the hooks registered inside it), once even if the transaction
 * was retried, after its client is free of it, in the request's context.
 * The transaction's caller gets its result once the hooks have run; a hook
 * that throws is logged, not thrown. For what must happen only if the data
 * did: publishing an event, sending a mail, clearing a cache. Outside a
 * transaction of the module, `work` runs at once (after the current
 * synchronous code).
 */
export function afterCommit(work: AfterCommitWork, datasource: string = DEFAULT_DATASOURCE_NAME): void {
  const context = currentContext();
  if (context?.transactions) {
    for (const [source, transaction] of context.transactions) {
      if (source.name === datasource && transaction.isActive) return transaction.afterCommit(work);
    }
  }
  void Promise.resolve().then(() => runHook(work, (message) => logger.warn(`Datasource "${datasource}": ${message}`)));
}
