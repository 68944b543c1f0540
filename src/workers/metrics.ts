// The metrics of `pillion proxy --concurrency N` (N > 1), in the primary: its own registry and each worker's
// answer aggregated with prom-client's AggregatorRegistry (counters and histograms summed; gauges by their
// aggregator: sum for counts of things), per-worker connection counts, and the counters and histograms of workers
// that died (as of their last scrape), so totals stay monotonic across restarts.
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import type { MetricsRegistry } from '../admin/types.js';
import { asPromJson, type MetricJson } from './ipc.js';

/** Counted by the primary for the whole proxy; the workers' copies would count each update N more times. */
const PRIMARY_OWNED = new Set(['pillion_config_updates_total', 'pillion_config_version_info']);

type Sample = MetricJson['values'][number];

export class FleetMetrics {
  /** Counters and histograms of workers that died; merged into one set as they come (see retire). */
  private readonly retired: MetricJson[][] = [];
  private merging = false;

  constructor(private readonly log: Logger) {}

  /** Keeps a dead worker's counters and histograms (its last scrape) in the totals. */
  retire(last: readonly MetricJson[]): void {
    const monotonic = last.filter((m) => (m.type === 'counter' || m.type === 'histogram') && !PRIMARY_OWNED.has(m.name) && !m.name.startsWith('process_') && !m.name.startsWith('nodejs_'));
    this.retired.push(monotonic);
    // Merged into one set now, not only at the next scrape: a worker crash-looping with nobody scraping would
    // otherwise grow this list by a full metric set per death.
    this.compact().catch((err: unknown) => this.log.warn({ err }, 'could not merge the metrics of exited workers'));
  }

  /** Merges the retired sets into one (one merge at a time; sets added meanwhile wait for the next). */
  private async compact(): Promise<void> {
    if (this.retired.length <= 1 || this.merging) return;
    this.merging = true;
    const n = this.retired.length;
    try {
      const merged = await AggregatorRegistry.aggregate(asPromJson(this.retired.slice(0, n))).getMetricsAsJSON();
      this.retired.splice(0, n, merged as unknown as MetricJson[]);
    } finally {
      this.merging = false;
    }
  }

  /** `own` (the primary's registry) and each worker's metrics by index (null: none to count), aggregated. */
  async aggregate(own: MetricJson[], workers: readonly (readonly MetricJson[] | null)[]): Promise<MetricsRegistry> {
    await this.compact();
    const sets: MetricJson[][] = [own, ...this.retired];
    const total: Sample[] = [];
    const active: Sample[] = [];
    workers.forEach((metrics, index) => {
      if (metrics === null) return;
      sets.push(metrics.filter((m) => !PRIMARY_OWNED.has(m.name)));
      for (const m of metrics) {
        const into = m.name === 'pillion_downstream_connections_total' ? total : m.name === 'pillion_downstream_connections_active' ? active : null;
        if (into === null) continue;
        for (const v of m.values) into.push({ value: v.value, labels: { ...v.labels, worker: String(index) } });
      }
    });
    sets.push([
      {
        name: 'pillion_worker_downstream_connections_total',
        help: 'Downstream connections accepted, per worker process and listener (Envoy: listener.<name>.worker_<i>.downstream_cx_total).',
        type: 'counter',
        aggregator: 'sum',
        values: total,
      },
      {
        name: 'pillion_worker_downstream_connections_active',
        help: 'Downstream connections open, per worker process and listener (Envoy: listener.<name>.worker_<i>.downstream_cx_active).',
        type: 'gauge',
        aggregator: 'sum',
        values: active,
      },
    ]);
    return AggregatorRegistry.aggregate(asPromJson(sets));
  }
}
