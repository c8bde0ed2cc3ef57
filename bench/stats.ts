export function median(values: number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

export function min(values: number[]): number {
  return Math.min(...values.filter((v) => Number.isFinite(v)));
}

export function max(values: number[]): number {
  return Math.max(...values.filter((v) => Number.isFinite(v)));
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Sub-buckets per power of two: a quantile comes out within 1/64 of the duration recorded. */
const SUB_BITS = 5;
const SUB = 1 << SUB_BITS;
/** Durations are kept in whole microseconds, up to 2^31 - 1 (about 36 minutes). */
const MAX_US = 2 ** 31 - 1;

/** The bucket of `us`: itself below 2 × SUB, then SUB buckets per power of two. */
function bucketOf(us: number): number {
  if (us < 2 * SUB) return us;
  const shift = 31 - Math.clz32(us) - SUB_BITS;
  return shift * SUB + (us >>> shift);
}

/** The middle of the microseconds that fall in bucket `index`. */
function bucketMiddleUs(index: number): number {
  if (index < 2 * SUB) return index + 0.5;
  const shift = Math.floor(index / SUB) - 1;
  return ((index - shift * SUB) << shift) + (1 << shift) / 2;
}

const BUCKETS = bucketOf(MAX_US) + 1;

/**
 * Durations in a fixed log-linear histogram (HdrHistogram's layout). Recording
 * is a few integer operations and one array increment, with no allocation
 * however many samples come, so it can sit on every query of a server under load.
 */
export class DurationHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  count = 0;
  totalMs = 0;

  record(ms: number): void {
    this.count++;
    this.totalMs += ms;
    this.counts[bucketOf(ms <= 0 ? 0 : ms >= MAX_US / 1000 ? MAX_US : (ms * 1000) >>> 0)]++;
  }

  /** The q-quantile (0–1) in ms; NaN when nothing was recorded. */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) return bucketMiddleUs(i) / 1000;
    }
    return NaN;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.totalMs = 0;
  }
}
