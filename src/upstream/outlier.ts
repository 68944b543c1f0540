// Passive outlier detection, as Envoy defines it: per-endpoint consecutive-5xx, consecutive-gateway-failure and
// (with split_external_local_origin_errors) consecutive-local-origin-failure counters, per-interval success
// counts for the interval detectors (outlier-interval.ts), ejection with a growing time capped by
// maxEjectionPercent and the enforcing_* percentages, and an interval tick that un-ejects, runs the interval
// detectors and decays. Pure: the clock and the randomness are passed in.
import type { OutlierDetectionModel } from '../config/model.js';
import type { Random } from './types.js';
import { failurePercentageOutliers, rollInterval, successRateOutliers } from './outlier-interval.js';

/** How one call to an endpoint ended, as the detector sees it. */
export type CallOutcome =
  /** Any response below 500: resets the counters. */
  | 'success'
  /** A 5xx other than 502/503/504. */
  | 'http5xx'
  /** 502, 503 or 504: a gateway failure and a 5xx. */
  | 'gatewayFailure'
  /**
   * Connect failure, reset or upstream timeout: a local-origin failure with split_external_local_origin_errors,
   * else a gateway failure and a 5xx.
   */
  | 'localFailure'
  /** Nothing the endpoint is to blame for (the client went away, a local refusal): not counted. */
  | 'ignored';

/** Why an endpoint was ejected: the `reason` label of pillion_upstream_ejections_total (a bounded set). */
export type EjectionReason =
  | 'consecutive_5xx'
  | 'consecutive_gateway_failure'
  | 'consecutive_local_origin_failure'
  | 'success_rate'
  | 'failure_percentage';

/** The detector's state of one endpoint; lives on EndpointState so it survives config swaps. */
export interface OutlierState {
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  consecutiveLocalOriginFailure: number;
  /** Clock time the ejection ends; null when the endpoint is not ejected. */
  ejectedUntilMs: number | null;
  /** What ejected the endpoint; null when it is not ejected. */
  ejectionReason: EjectionReason | null;
  /** The ejection-time multiplier: grows by one per ejection (up to the cap), shrinks by one per interval spent in. */
  timesEjected: number;
  /** Calls of the interval under way (Envoy's current success-rate bucket): successes and all counted. */
  intervalSuccess: number;
  intervalTotal: number;
  /** The last whole interval's counts: what the interval detectors and /clusters read. */
  lastSuccess: number;
  lastTotal: number;
}

export function newOutlierState(): OutlierState {
  return {
    consecutive5xx: 0,
    consecutiveGatewayFailure: 0,
    consecutiveLocalOriginFailure: 0,
    ejectedUntilMs: null,
    ejectionReason: null,
    timesEjected: 0,
    intervalSuccess: 0,
    intervalTotal: 0,
    lastSuccess: 0,
    lastTotal: 0,
  };
}

export function isEjected(s: OutlierState): boolean {
  return s.ejectedUntilMs !== null;
}

export function ejectedCount(all: readonly OutlierState[]): number {
  let n = 0;
  for (const s of all) if (s.ejectedUntilMs !== null) n++;
  return n;
}

/** Envoy's runtime featureEnabled(percent): 0 and 100 need no dice. */
function enforced(percent: number, random: Random): boolean {
  if (percent >= 100) return true;
  if (percent <= 0) return false;
  return random() * 100 < percent;
}

function enforcingPercent(cfg: OutlierDetectionModel, reason: EjectionReason): number {
  switch (reason) {
    case 'consecutive_5xx':
      return cfg.enforcingConsecutive5xx;
    case 'consecutive_gateway_failure':
      return cfg.enforcingConsecutiveGatewayFailure;
    case 'consecutive_local_origin_failure':
      return cfg.enforcingConsecutiveLocalOriginFailure;
    case 'success_rate':
      return cfg.successRate.enforcing;
    case 'failure_percentage':
      return cfg.failurePercentage.enforcing;
  }
}

/** What an ejection attempt came to: done, refused by maxEjectionPercent, or not drawn by the enforcing percent. */
export type EjectResult = 'ejected' | 'overflow' | 'notEnforced';

/**
 * Ejects `endpoint` for `reason` if maxEjectionPercent leaves room and the reason's enforcing percent says so
 * (Envoy's ejectHost: the room is checked first, then the dice). The time is base × multiplier, capped at
 * max(maxEjectionTime, base), plus up to maxEjectionTimeJitter; the multiplier stops growing past the cap.
 */
export function eject(
  cfg: OutlierDetectionModel,
  endpoint: OutlierState,
  all: readonly OutlierState[],
  reason: EjectionReason,
  now: number,
  random: Random,
): EjectResult {
  // Envoy: eject while the ejected share stays within maxEjectionPercent, and always when none is ejected.
  const ejected = ejectedCount(all);
  if (ejected > 0 && (100 * (ejected + 1)) / all.length > cfg.maxEjectionPercent) return 'overflow';
  if (!enforced(enforcingPercent(cfg, reason), random)) return 'notEnforced';
  const base = cfg.baseEjectionTimeMs;
  const capMs = Math.max(base, cfg.maxEjectionTimeMs);
  // Envoy grows the multiplier only while base × multiplier < cap + base, so decay after a long outage is bounded.
  if (endpoint.timesEjected * base < capMs + base) endpoint.timesEjected++;
  const jitter = cfg.maxEjectionTimeJitterMs > 0 ? Math.floor(random() * (cfg.maxEjectionTimeJitterMs + 1)) : 0;
  endpoint.ejectedUntilMs = now + Math.min(base * endpoint.timesEjected, capMs) + jitter;
  endpoint.ejectionReason = reason;
  return 'ejected';
}

/**
 * One consecutive counter reached its threshold. A refusal for room leaves the counter at the threshold, so the
 * next failure tries again; one the enforcing percent declined starts the run afresh (as Envoy resets it).
 */
function consecutiveEjection(
  cfg: OutlierDetectionModel,
  endpoint: OutlierState,
  all: readonly OutlierState[],
  reason: 'consecutive_5xx' | 'consecutive_gateway_failure' | 'consecutive_local_origin_failure',
  now: number,
  random: Random,
): boolean {
  const result = eject(cfg, endpoint, all, reason, now, random);
  if (result === 'notEnforced') {
    if (reason === 'consecutive_5xx') endpoint.consecutive5xx = 0;
    else if (reason === 'consecutive_gateway_failure') endpoint.consecutiveGatewayFailure = 0;
    else endpoint.consecutiveLocalOriginFailure = 0;
  }
  return result === 'ejected';
}

/**
 * Counts one outcome on `endpoint` (one of `all`, the cluster's endpoints). Returns true when it ejected the
 * endpoint (the caller rebuilds its load balancer). The interval counts take every counted outcome, as Envoy's
 * success-rate buckets do; the consecutive counters skip calls that finish while the endpoint is already ejected
 * (they start afresh on un-ejection). With split_external_local_origin_errors a local-origin failure stays out of
 * the interval counts: Envoy keeps those in a separate local-origin success rate, which Pillion does not run.
 */
export function recordOutcome(
  cfg: OutlierDetectionModel,
  endpoint: OutlierState,
  all: readonly OutlierState[],
  outcome: CallOutcome,
  now: number,
  random: Random,
): boolean {
  if (outcome === 'ignored') return false;
  const split = cfg.splitExternalLocalOriginErrors;
  if (outcome === 'success') {
    endpoint.intervalSuccess++;
    endpoint.intervalTotal++;
  } else if (outcome !== 'localFailure' || !split) {
    endpoint.intervalTotal++;
  }
  if (endpoint.ejectedUntilMs !== null) return false;
  if (outcome === 'localFailure' && split) {
    endpoint.consecutiveLocalOriginFailure++;
    // A threshold of 0 never fires (Envoy compares the run to it with ==, so 0 is never reached): detector off.
    if (cfg.consecutiveLocalOriginFailure === 0 || endpoint.consecutiveLocalOriginFailure < cfg.consecutiveLocalOriginFailure) return false;
    return consecutiveEjection(cfg, endpoint, all, 'consecutive_local_origin_failure', now, random);
  }
  // With split on, any response means the connection worked: Envoy's local-origin success resets that run.
  if (split) endpoint.consecutiveLocalOriginFailure = 0;
  if (outcome === 'success') {
    endpoint.consecutive5xx = 0;
    endpoint.consecutiveGatewayFailure = 0;
    return false;
  }
  endpoint.consecutive5xx++;
  if (outcome === 'http5xx') endpoint.consecutiveGatewayFailure = 0;
  else endpoint.consecutiveGatewayFailure++;
  // Envoy counts the gateway failure before the 5xx, so a call that completes both runs is a gateway ejection,
  // and a 5xx ejection when that one is not enforced.
  if (
    cfg.consecutiveGatewayFailure > 0 &&
    endpoint.consecutiveGatewayFailure >= cfg.consecutiveGatewayFailure &&
    consecutiveEjection(cfg, endpoint, all, 'consecutive_gateway_failure', now, random)
  ) {
    return true;
  }
  if (cfg.consecutive5xx === 0 || endpoint.consecutive5xx < cfg.consecutive5xx) return false;
  return consecutiveEjection(cfg, endpoint, all, 'consecutive_5xx', now, random);
}

/** What one interval tick did: endpoints let back in, and endpoints the interval detectors ejected. */
export interface TickResult {
  readonly unejected: number;
  readonly ejected: readonly OutlierState[];
}

/**
 * The interval tick, in Envoy's order: un-eject endpoints whose time is up (their consecutive counters reset) and
 * close the interval's counts; run the success-rate and then the failure-percentage detector over the endpoints
 * not ejected; then take one off the multiplier of each endpoint that is still in. Un-ejection happens only
 * here, so an endpoint not ejected at a tick was not ejected at the previous one nor in between.
 */
export function tick(cfg: OutlierDetectionModel, all: readonly OutlierState[], now: number, random: Random): TickResult {
  let unejected = 0;
  // The endpoints in for the whole interval: the only ones whose multiplier may decay at its end.
  const stayedIn: OutlierState[] = [];
  for (const s of all) {
    rollInterval(s);
    if (s.ejectedUntilMs === null) stayedIn.push(s);
    if (s.ejectedUntilMs === null || now < s.ejectedUntilMs) continue;
    s.ejectedUntilMs = null;
    s.ejectionReason = null;
    s.consecutive5xx = 0;
    s.consecutiveGatewayFailure = 0;
    s.consecutiveLocalOriginFailure = 0;
    unejected++;
  }
  const ejected: OutlierState[] = [];
  // Both candidate lists come from the same endpoints (those in at the start), as Envoy collects them together.
  const bySuccessRate = cfg.successRate.enforcing > 0 ? successRateOutliers(cfg.successRate, all) : [];
  const byFailures = cfg.failurePercentage.enforcing > 0 ? failurePercentageOutliers(cfg.failurePercentage, all) : [];
  for (const s of bySuccessRate) if (eject(cfg, s, all, 'success_rate', now, random) === 'ejected') ejected.push(s);
  for (const s of byFailures) {
    if (s.ejectedUntilMs === null && eject(cfg, s, all, 'failure_percentage', now, random) === 'ejected') ejected.push(s);
  }
  for (const s of stayedIn) if (s.ejectedUntilMs === null && s.timesEjected > 0) s.timesEjected--;
  return { unejected, ejected };
}

/** The outcome of an HTTP exchange from its final status and whether the proxy ended it for a local reason. */
export function httpOutcome(status: number, localFailure: boolean): CallOutcome {
  if (localFailure) return 'localFailure';
  if (status === 502 || status === 503 || status === 504) return 'gatewayFailure';
  return status >= 500 ? 'http5xx' : 'success';
}
