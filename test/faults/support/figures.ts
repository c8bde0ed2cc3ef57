import { Console } from 'node:console';
import { tally, type Outcome } from './load.js';

export interface ScenarioFigures {
  readonly scenario: string;
  readonly requests: number;
  readonly byKind: Record<string, number>;
  readonly slowestMillis: number;
  /**
   * Clients still checked out (module leases or pool) once the scenario
   * settled; for a shutdown, backends the process left on the server.
   */
  readonly leaked: number;
  /** Application processes that exited without being asked to. */
  readonly crashes: number;
}

// Straight to stdout: Jest's console would add a stack trace to every line.
const out = new Console(process.stdout, process.stderr);

/** Collects what each fault scenario did and prints one line per scenario, and the totals. */
export class FaultFigures {
  private readonly scenarios: ScenarioFigures[] = [];

  record(scenario: string, outcomes: readonly Outcome[], counts: { leaked: number; crashes: number }): ScenarioFigures {
    const figures: ScenarioFigures = {
      scenario,
      requests: outcomes.length,
      byKind: tally(outcomes),
      slowestMillis: Math.max(0, ...outcomes.map((o) => o.millis)),
      ...counts,
    };
    this.scenarios.push(figures);
    out.log(`[faults] ${scenario}: ${line(figures)}`);
    return figures;
  }

  /** Prints the totals over every scenario recorded. */
  printTotals(): void {
    const byKind: Record<string, number> = {};
    for (const s of this.scenarios) for (const [kind, n] of Object.entries(s.byKind)) byKind[kind] = (byKind[kind] ?? 0) + n;
    const totals: ScenarioFigures = {
      scenario: 'total',
      requests: this.scenarios.reduce((n, s) => n + s.requests, 0),
      byKind: Object.fromEntries(Object.entries(byKind).sort((a, b) => b[1] - a[1])),
      slowestMillis: Math.max(0, ...this.scenarios.map((s) => s.slowestMillis)),
      leaked: this.scenarios.reduce((n, s) => n + s.leaked, 0),
      crashes: this.scenarios.reduce((n, s) => n + s.crashes, 0),
    };
    out.log(`[faults] ${this.scenarios.length} scenarios: ${line(totals)}`);
  }
}

function line(f: ScenarioFigures): string {
  const kinds = Object.entries(f.byKind)
    .map(([kind, n]) => `${kind}: ${n}`)
    .join(', ');
  return `${f.requests} requests (${kinds}); slowest ${f.slowestMillis} ms; leaked ${f.leaked}; crashes ${f.crashes}`;
}
