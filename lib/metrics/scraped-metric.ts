import type { Aggregator, Metric } from 'prom-client';

type Labels = Record<string, string | number>;

/** One sample as prom-client's registry formats it (`metricName` for histogram series). */
export interface Sample {
  labels: Labels;
  value: number;
  metricName?: string;
}

/**
 * A metric whose samples are read from the pools when the registry is
 * scraped. prom-client's own classes only hold values pushed into them (and a
 * histogram cannot be given its buckets), so this implements what the
 * registry calls on a metric: `get()` and `reset()`.
 */
export class ScrapedMetric {
  readonly aggregator: Aggregator = 'sum';

  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'gauge' | 'counter' | 'histogram',
    private readonly read: () => Sample[],
  ) {}

  async get(): Promise<{ name: string; help: string; type: string; aggregator: Aggregator; values: Sample[] }> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.read() };
  }

  /** Called by `registry.resetMetrics()`: the values belong to the pools, there is nothing to reset. */
  reset(): void {}

  /** The registry's API is typed for prom-client's own classes; it only calls what this one has. */
  asMetric(): Metric {
    return this as unknown as Metric;
  }
}
