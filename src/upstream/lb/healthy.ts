// Shared helpers of the load balancers: which endpoints may take traffic (and which panic may use), and weights.
import type { EndpointState } from '../types.js';
import { passesHealthCheck } from '../health-check-state.js';

/**
 * The one rule for "this endpoint may take traffic": EDS says HEALTHY or UNKNOWN, outlier detection has not
 * ejected it, and it passes its active health check when the cluster has one (Envoy's failed_eds_health,
 * failed_outlier_check and failed_active_hc flags). Priority health, locality health and every balancer's
 * candidate list come from this predicate, so another reason to stop using an endpoint is added here and nowhere else.
 */
export function isUsable(e: EndpointState): boolean {
  return e.healthy === true && e.outlier.ejectedUntilMs === null && passesHealthCheck(e.healthCheck);
}

/**
 * What panic mode falls back to when too few endpoints are usable. Envoy uses every host; Pillion keeps out those
 * the control plane itself marked unhealthy or draining (its verdict is deliberate, an ejection is a guess).
 */
export function isPanicCandidate(e: EndpointState): boolean {
  return e.healthy === true;
}

/** Weight as a positive number (the model promises >= 1; be defensive so a bad value never divides by zero). */
export function weightOf(e: EndpointState): number {
  const w = e.weight;
  return w > 0 && Number.isFinite(w) ? w : 1;
}

export function allWeightsEqual(endpoints: readonly EndpointState[]): boolean {
  for (let i = 1; i < endpoints.length; i++) if (weightOf(endpoints[i]!) !== weightOf(endpoints[0]!)) return false;
  return true;
}
