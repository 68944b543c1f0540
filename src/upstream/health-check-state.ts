// Active health checking's decision core, as Envoy's health checker decides (health_checker_base_impl): one
// endpoint's status from the results of its probes, with the healthy/unhealthy thresholds. Pure: no sockets, no
// timers; the shell (health-check.ts) probes and reports here.
import type { HealthCheckModel, StatusRange } from '../config/model.js';
import { MAX_TIMER_MS } from '../config/values.js';

/**
 * pending: configured but not probed yet. Envoy marks a host failed-active-HC when it is added to a cluster with
 * health checks, so it takes no traffic until its first probe passes; one success is then enough ("during startup,
 * only a single successful health check is required").
 */
export type HealthCheckStatus = 'pending' | 'healthy' | 'unhealthy';

/** How one probe ended. */
export type ProbeResult =
  /** TCP connected, or an HTTP status in expected_statuses. */
  | 'success'
  /** An HTTP status neither expected nor retriable: Envoy fails the endpoint at once, whatever the threshold. */
  | 'failure'
  /** Connect failure, reset, timeout, a response that is not HTTP, or a retriable status: counts toward unhealthy_threshold. */
  | 'networkFailure';

export interface HealthCheckState {
  status: HealthCheckStatus;
  /** Successes in a row while not healthy (toward healthy_threshold). */
  successes: number;
  /** Counted failures in a row while healthy (toward unhealthy_threshold). */
  failures: number;
}

export function newHealthCheckState(): HealthCheckState {
  return { status: 'pending', successes: 0, failures: 0 };
}

/** Whether active health checking lets the endpoint take traffic (null: the cluster has no health check). */
export function passesHealthCheck(s: HealthCheckState | null): boolean {
  return s === null || s.status === 'healthy';
}

export function failingCount(all: readonly (HealthCheckState | null)[]): number {
  let n = 0;
  for (const s of all) if (!passesHealthCheck(s)) n++;
  return n;
}

/**
 * Counts one probe result. Returns true when the endpoint started or stopped passing (the caller rebuilds its
 * load balancer); pending → unhealthy changes what /clusters shows but not who takes traffic.
 */
export function recordProbe(cfg: Pick<HealthCheckModel, 'healthyThreshold' | 'unhealthyThreshold'>, s: HealthCheckState, result: ProbeResult): boolean {
  if (result === 'success') {
    s.failures = 0;
    if (s.status === 'healthy') return false;
    if (s.status === 'pending' || ++s.successes >= cfg.healthyThreshold) {
      s.status = 'healthy';
      s.successes = 0;
      return true;
    }
    return false;
  }
  s.successes = 0;
  if (s.status === 'pending') {
    // The first probe failed: the endpoint was never in, and now needs healthy_threshold successes.
    s.status = 'unhealthy';
    return false;
  }
  if (s.status === 'unhealthy') return false;
  if (result === 'failure' || ++s.failures >= cfg.unhealthyThreshold) {
    s.status = 'unhealthy';
    s.failures = 0;
    return true;
  }
  return false;
}

/** The result of an HTTP probe from the response's status. */
export function httpResult(status: number, expected: readonly StatusRange[], retriable: readonly StatusRange[]): ProbeResult {
  // Envoy: expected_statuses wins where the two overlap.
  if (inRanges(status, expected)) return 'success';
  return inRanges(status, retriable) ? 'networkFailure' : 'failure';
}

function inRanges(status: number, ranges: readonly StatusRange[]): boolean {
  for (const r of ranges) if (status >= r.start && status < r.end) return true;
  return false;
}

/**
 * Milliseconds until the next probe (Envoy's HealthCheckerImplBase::interval, without the edge and unhealthy
 * variants): no_traffic_interval until the cluster has carried traffic, then interval; plus the jitters.
 */
export function nextDelayMs(cfg: HealthCheckModel, hadTraffic: boolean, random: () => number): number {
  let ms = hadTraffic ? cfg.intervalMs : cfg.noTrafficIntervalMs;
  const percentJitter = Math.floor((cfg.intervalJitterPercent * ms) / 100);
  if (percentJitter > 0) ms += Math.floor(random() * percentJitter);
  if (cfg.intervalJitterMs > 0) ms += Math.floor(random() * cfg.intervalJitterMs);
  return Math.min(ms, MAX_TIMER_MS);
}
