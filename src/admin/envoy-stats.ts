// /stats in Envoy's shapes (`name: value` lines, ?format=json), read from our Prometheus registry. The main
// metrics that have a clear Envoy equivalent are printed under Envoy's stat names (summed over the labels Envoy
// does not split by, e.g. endpoints); everything else keeps its Prometheus name and labels, so nothing is hidden.
import type { MetricObjectWithValues, MetricValue, Registry } from 'prom-client';

type Labels = Readonly<Partial<Record<string, string | number>>>;

/** Envoy stat names of one sample of a metric; empty when there is no clear equivalent for this sample. */
type Mapping = (l: Labels) => readonly string[];

/** Envoy's stat-name sanitizing: ':' is not allowed in a stat name and becomes '_' (backend.default:8080 → backend.default_8080). */
function seg(v: string | number | undefined): string {
  return String(v ?? '').replace(/:/g, '_');
}

const cluster = (stat: string): Mapping => (l) => [`cluster.${seg(l.cluster)}.${stat}`];

/**
 * A request counted three ways, as Envoy does: `<prefix>total`, `<prefix>2xx` and `<prefix>200`. A sample whose
 * code is "other" (no response, or a status outside 100-599) has no exact-code stat: Envoy has none either.
 */
function byCode(prefix: string, l: Labels): string[] {
  const out = [`${prefix}total`, `${prefix}${seg(l.code_class)}`];
  if (l.response_code !== undefined && l.response_code !== 'other') out.push(`${prefix}${seg(l.response_code)}`);
  return out;
}

/** Our metric name → its Envoy stats (envoy docs: cluster_manager/cluster_stats, http_conn_man/stats, listeners/stats). */
const ENVOY_NAMES: ReadonlyMap<string, Mapping> = new Map<string, Mapping>([
  ['pillion_downstream_requests_total', (l) => byCode(`http.${seg(l.direction)}.downstream_rq_`, l)],
  ['pillion_downstream_requests_active', (l) => [`http.${seg(l.direction)}.downstream_rq_active`]],
  ['pillion_downstream_connections_total', (l) => [`listener.${seg(l.listener)}.downstream_cx_total`]],
  ['pillion_downstream_connections_active', (l) => [`listener.${seg(l.listener)}.downstream_cx_active`]],
  // --concurrency N > 1: each worker's share, as Envoy's per-worker listener stats.
  ['pillion_worker_downstream_connections_total', (l) => [`listener.${seg(l.listener)}.worker_${seg(l.worker)}.downstream_cx_total`]],
  ['pillion_worker_downstream_connections_active', (l) => [`listener.${seg(l.listener)}.worker_${seg(l.worker)}.downstream_cx_active`]],
  ['pillion_upstream_requests_total', (l) => byCode(`cluster.${seg(l.cluster)}.upstream_rq_`, l)],
  ['pillion_upstream_requests_active', cluster('upstream_rq_active')],
  ['pillion_upstream_connections_active', cluster('upstream_cx_active')],
  ['pillion_upstream_connect_failures_total', cluster('upstream_cx_connect_fail')],
  // Envoy counts both circuit breakers' overflows (pending queue, max_requests) in upstream_rq_pending_overflow.
  ['pillion_upstream_pending_overflow_total', cluster('upstream_rq_pending_overflow')],
  ['pillion_upstream_requests_overflow_total', cluster('upstream_rq_pending_overflow')],
  ['pillion_upstream_retries_total', cluster('upstream_rq_retry')],
  [
    'pillion_upstream_retries_skipped_total',
    (l) =>
      l.reason === 'budget'
        ? [`cluster.${seg(l.cluster)}.upstream_rq_retry_overflow`]
        : l.reason === 'attempts'
          ? [`cluster.${seg(l.cluster)}.upstream_rq_retry_limit_exceeded`]
          : [],
  ],
  [
    'pillion_upstream_ejections_total',
    (l) => [`cluster.${seg(l.cluster)}.outlier_detection.ejections_enforced_total`, `cluster.${seg(l.cluster)}.outlier_detection.ejections_enforced_${seg(l.reason)}`],
  ],
  ['pillion_upstream_endpoints_ejected', cluster('outlier_detection.ejections_active')],
  ['pillion_upstream_health_checks_total', (l) => [`cluster.${seg(l.cluster)}.health_check.attempt`, `cluster.${seg(l.cluster)}.health_check.${seg(l.result)}`]],
  ['pillion_xds_connected', () => ['control_plane.connected_state']],
  // Envoy keeps LDS and CDS update counts on their managers; RDS, EDS and SDS per resource, which we do not split.
  [
    'pillion_xds_updates_total',
    (l) => {
      const manager = l.type === 'lds' ? 'listener_manager.lds' : l.type === 'cds' ? 'cluster_manager.cds' : null;
      if (manager === null) return [];
      return [`${manager}.update_attempt`, `${manager}.${l.result === 'ack' ? 'update_success' : 'update_rejected'}`];
    },
  ],
]);

export interface Stat {
  readonly name: string;
  readonly value: number;
}

function promName(metric: string, labels: Labels): string {
  const parts = Object.entries(labels)
    .filter(([k]) => k !== 'le')
    .map(([k, v]) => `${k}=${JSON.stringify(String(v))}`);
  return parts.length === 0 ? metric : `${metric}{${parts.join(',')}}`;
}

/** Every stat, sorted by name as Envoy prints them. Histogram buckets are left out (their _sum and _count stay). */
export function toEnvoyStats(metrics: readonly MetricObjectWithValues<MetricValue<string>>[]): Stat[] {
  const sums = new Map<string, number>();
  const add = (name: string, v: number): void => {
    sums.set(name, (sums.get(name) ?? 0) + v);
  };
  for (const m of metrics) {
    const mapping = ENVOY_NAMES.get(m.name);
    for (const sample of m.values) {
      const metricName = (sample as { metricName?: string }).metricName ?? m.name;
      if (metricName.endsWith('_bucket')) continue;
      const names = mapping === undefined ? [] : mapping(sample.labels);
      if (names.length === 0) add(promName(metricName, sample.labels), sample.value);
      for (const n of names) add(n, sample.value);
    }
  }
  return [...sums].map(([name, value]) => ({ name, value })).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export async function envoyStats(registry: Pick<Registry, 'getMetricsAsJSON'>, filter: RegExp | null): Promise<Stat[]> {
  const all = toEnvoyStats(await registry.getMetricsAsJSON());
  return filter === null ? all : all.filter((s) => filter.test(s.name));
}

export function statsText(stats: readonly Stat[]): string {
  return stats.map((s) => `${s.name}: ${s.value}\n`).join('');
}
