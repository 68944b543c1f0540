// What cumulative counters (Prometheus counters scraped once a second) added over the last few seconds, so a
// screen shows the traffic of now, not the average since start: a weight edit shows as the new split at once.

/**
 * Samples of named cumulative counters with their time; `deltas()` sums each counter's increases over the
 * window. A counter that went down was reset (its process restarted): its new value is what it added since.
 */
export class CounterWindow {
  private readonly samples: Array<{ at: number; values: ReadonlyMap<string, number> }> = [];

  /** `maxSamples` bounds the memory whatever the sampling rate. */
  constructor(
    readonly windowMs: number,
    private readonly maxSamples = 64,
  ) {}

  /** Adds a sample taken at `at` (ms); an empty one stands for a scrape that failed. */
  push(at: number, values: ReadonlyMap<string, number>): void {
    this.samples.push({ at, values });
    // Keep one sample at or before the window's start: the baseline of the first interval.
    while (this.samples.length > 2 && (this.samples[1]!.at <= at - this.windowMs || this.samples.length > this.maxSamples)) this.samples.shift();
  }

  /** The span the deltas cover (ms): from the baseline sample to the newest one; 0 with fewer than two. */
  spanMs(): number {
    const n = this.samples.length;
    return n < 2 ? 0 : this.samples[n - 1]!.at - this.samples[0]!.at;
  }

  /** Each counter's increase over the window. Empty with fewer than two samples. */
  deltas(): Map<string, number> {
    const out = new Map<string, number>();
    for (let i = 1; i < this.samples.length; i++) {
      const prev = this.samples[i - 1]!.values;
      const cur = this.samples[i]!.values;
      // A failed scrape (empty sample) says nothing: compare across it instead of counting a reset.
      if (cur.size === 0) continue;
      let base = prev;
      for (let j = i - 1; base.size === 0 && j > 0; j--) base = this.samples[j - 1]!.values;
      for (const [k, v] of cur) {
        const before = base.get(k);
        const inc = before === undefined || v < before ? (base.size === 0 ? 0 : v) : v - before;
        if (inc > 0) out.set(k, (out.get(k) ?? 0) + inc);
      }
    }
    return out;
  }
}
