// Passive outlier detection, as Envoy defines it (split_external_local_origin_errors=false): per-endpoint
// consecutive-5xx and consecutive-gateway-failure counters, ejection with a growing time capped by
// maxEjectionPercent, and an interval tick that un-ejects and decays. Pure: the clock is passed in.
import type { OutlierDetectionModel } from '../config/model.js';

/** Envoy's max_ejection_time default: an ejection never lasts longer than this (or baseEjectionTime if larger). */
export const MAX_EJECTION_TIME_MS = 300_000;

/** How one call to an endpoint ended, as the detector sees it. */
export type CallOutcome =
  /** Any response below 500: resets both counters. */
  | 'success'
  /** A 5xx other than 502/503/504. */
  | 'http5xx'
  /** 502, 503 or 504: a gateway failure and a 5xx. */
  | 'gatewayFailure'
  /** Connect failure, reset or upstream timeout: without split_external_local_origin_errors, a gateway failure and a 5xx. */
  | 'localFailure'
  /** Nothing the endpoint is to blame for (the client went away, a local refusal): not counted. */
  | 'ignored';

/** The detector's state of one endpoint; lives on EndpointState so it survives config swaps. */
export interface OutlierState {
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  /** Clock time the ejection ends; null when the endpoint is not ejected. */
  ejectedUntilMs: number | null;
  /** The ejection-time multiplier: grows by one per ejection, shrinks by one per interval spent healthy. */
  timesEjected: number;
}

export function newOutlierState(): OutlierState {
  return { consecutive5xx: 0, consecutiveGatewayFailure: 0, ejectedUntilMs: null, timesEjected: 0 };
}

export function isEjected(s: OutlierState): boolean {
  return s.ejectedUntilMs !== null;
}

export function ejectedCount(all: readonly OutlierState[]): number {
  let n = 0;
  for (const s of all) if (s.ejectedUntilMs !== null) n++;
  return n;
}

/**
 * Counts one outcome on `endpoint` (one of `all`, the cluster's endpoints). Returns true when it ejected the
 * endpoint (the caller rebuilds its load balancer). Outcomes of calls that finish while the endpoint is already
 * ejected are not counted: the counters start afresh on un-ejection.
 */
export function recordOutcome(
  cfg: OutlierDetectionModel,
  endpoint: OutlierState,
  all: readonly OutlierState[],
  outcome: CallOutcome,
  now: number,
): boolean {
  if (outcome === 'ignored' || endpoint.ejectedUntilMs !== null) return false;
  if (outcome === 'success') {
    endpoint.consecutive5xx = 0;
    endpoint.consecutiveGatewayFailure = 0;
    return false;
  }
  endpoint.consecutive5xx++;
  if (outcome === 'http5xx') endpoint.consecutiveGatewayFailure = 0;
  else endpoint.consecutiveGatewayFailure++;
  if (endpoint.consecutive5xx < cfg.consecutive5xx && endpoint.consecutiveGatewayFailure < cfg.consecutiveGatewayFailure) return false;
  // Envoy: eject while the ejected share stays within maxEjectionPercent, and always when none is ejected.
  // A refused ejection leaves the counters at the threshold: the next failure tries again.
  const ejected = ejectedCount(all);
  if (ejected > 0 && (100 * (ejected + 1)) / all.length > cfg.maxEjectionPercent) return false;
  endpoint.timesEjected++;
  const capMs = Math.max(cfg.baseEjectionTimeMs, MAX_EJECTION_TIME_MS);
  endpoint.ejectedUntilMs = now + Math.min(cfg.baseEjectionTimeMs * endpoint.timesEjected, capMs);
  return true;
}

/**
 * The interval tick: un-ejects endpoints whose time is up (their counters reset) and decrements the multiplier
 * of endpoints that stayed un-ejected for the whole interval. Un-ejection happens only here, so an endpoint not
 * ejected at a tick was not ejected at the previous one nor in between. Returns true when one was un-ejected.
 */
export function tick(all: readonly OutlierState[], now: number): boolean {
  let changed = false;
  for (const s of all) {
    if (s.ejectedUntilMs !== null) {
      if (now < s.ejectedUntilMs) continue;
      s.ejectedUntilMs = null;
      s.consecutive5xx = 0;
      s.consecutiveGatewayFailure = 0;
      changed = true;
    } else if (s.timesEjected > 0) {
      s.timesEjected--;
    }
  }
  return changed;
}

/** The outcome of an HTTP exchange from its final status and whether the proxy ended it for a local reason. */
export function httpOutcome(status: number, localFailure: boolean): CallOutcome {
  if (localFailure) return 'localFailure';
  if (status === 502 || status === 503 || status === 504) return 'gatewayFailure';
  return status >= 500 ? 'http5xx' : 'success';
}
