// Translates a Cluster's health_checks (Envoy's core.v3.HealthCheck) into the HealthCheckModel, with Envoy's
// rules: timeout, interval and both thresholds are required, one health check per cluster.
import { DEFAULTS, type HealthCheckModel, type StatusRange } from './model.js';
import { durationMs, invalid, notEnforced, wrapped, type Plain } from './values.js';

/** Envoy's default expected_statuses: 200 only. */
const DEFAULT_EXPECTED: readonly StatusRange[] = [{ start: 200, end: 201 }];

/** Settings Envoy has that change only when or how often a probe runs, not what passes: accepted, said in a warning. */
const INTERVAL_VARIANTS = ['no_traffic_healthy_interval', 'unhealthy_interval', 'unhealthy_edge_interval', 'healthy_edge_interval'];

// A header value (Envoy's HTTP_HEADER_VALUE rule): no control characters; the path also no spaces, so the
// request line we write stays one line.
const CONTROL = /[\u0000-\u001f\u007f]/;

function required(hc: Plain, key: string, at: string): number {
  if (!hc[key]) invalid(`${at}.${key}: missing (Envoy requires it)`);
  const ms = durationMs(hc[key], 0, `${at}.${key}`);
  if (ms === 0) invalid(`${at}.${key}: must be above 0`);
  return ms;
}

function threshold(hc: Plain, key: string, at: string): number {
  if (hc[key] === undefined || hc[key] === null) invalid(`${at}.${key}: missing (Envoy requires it)`);
  const n = wrapped<number>(hc[key], 0);
  if (n < 1) invalid(`${at}.${key}: must be at least 1`);
  return n;
}

function ranges(list: Plain[] | undefined, fallback: readonly StatusRange[], at: string): readonly StatusRange[] {
  if (!list || list.length === 0) return fallback;
  return list.map((r, i) => {
    const start = Number(r.start ?? 0);
    const end = Number(r.end ?? 0);
    // Envoy's rule: both required, 100 <= start < end <= 600.
    if (!(start >= 100 && start < end && end <= 600)) invalid(`${at}[${i}]: expected 100 <= start < end <= 600, got [${start}, ${end})`);
    return { start, end };
  });
}

function http(h: Plain, clusterName: string, at: string): NonNullable<HealthCheckModel['http']> {
  const path = String(h.path ?? '');
  if (!path) invalid(`${at}.path: missing`);
  if (!path.startsWith('/')) invalid(`${at}.path: expected a path starting with "/", got ${JSON.stringify(path.slice(0, 64))}`);
  if (CONTROL.test(path) || path.includes(' ')) invalid(`${at}.path: control characters or spaces are not allowed`);
  const host = String(h.host ?? '');
  if (CONTROL.test(host)) invalid(`${at}.host: control characters are not allowed`);
  if (h.send) invalid(`${at}.send: request payloads are not supported`);
  if (h.receive?.length) invalid(`${at}.receive: response payload matching is not supported (statuses only)`);
  return {
    path,
    host: host || clusterName,
    expectedStatuses: ranges(h.expected_statuses, DEFAULT_EXPECTED, `${at}.expected_statuses`),
    retriableStatuses: ranges(h.retriable_statuses, [], `${at}.retriable_statuses`),
  };
}

/** The cluster's health check, or undefined when it has none; throws ResourceInvalid naming the field. */
export function healthCheckOf(list: Plain[] | undefined, clusterName: string): HealthCheckModel | undefined {
  if (!list || list.length === 0) return undefined;
  // Envoy refuses the cluster too ("Multiple health checks not supported"): taking the first would drop a check
  // the operator relies on without a word.
  if (list.length > 1) invalid(`health_checks: ${list.length} entries; one health check per cluster is supported (as in Envoy)`);
  const hc = list[0]!;
  const at = 'health_checks[0]';
  const timeoutMs = required(hc, 'timeout', at);
  const intervalMs = required(hc, 'interval', at);
  const unhealthyThreshold = threshold(hc, 'unhealthy_threshold', at);
  const healthyThreshold = threshold(hc, 'healthy_threshold', at);
  const noTrafficIntervalMs = durationMs(hc.no_traffic_interval, DEFAULTS.healthCheck.noTrafficIntervalMs, `${at}.no_traffic_interval`);
  if (noTrafficIntervalMs === 0) invalid(`${at}.no_traffic_interval: must be above 0`);
  const intervalJitterMs = durationMs(hc.interval_jitter, 0, `${at}.interval_jitter`);
  const initialJitterMs = durationMs(hc.initial_jitter, 0, `${at}.initial_jitter`);
  const intervalJitterPercent = Number(hc.interval_jitter_percent ?? 0);
  for (const key of INTERVAL_VARIANTS) if (hc[key]) notEnforced(`${at}.${key}`, 'every probe waits interval');
  if (hc.alt_port) notEnforced(`${at}.alt_port`, "probes go to the endpoint's own port");

  const base = { timeoutMs, intervalMs, noTrafficIntervalMs, intervalJitterMs, intervalJitterPercent, initialJitterMs, unhealthyThreshold, healthyThreshold };
  switch (hc.health_checker) {
    case 'http_health_check':
      return { ...base, http: http(hc.http_health_check ?? {}, clusterName, `${at}.http_health_check`) };
    case 'tcp_health_check': {
      const t: Plain = hc.tcp_health_check ?? {};
      if (t.send || t.receive?.length) invalid(`${at}.tcp_health_check: send/receive payloads are not supported (connect only)`);
      return base;
    }
    case undefined:
      return invalid(`${at}: one of http_health_check, tcp_health_check is required`);
    default:
      return invalid(`${at}.${String(hc.health_checker)}: not supported (http_health_check or tcp_health_check)`);
  }
}
