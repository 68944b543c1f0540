// Shared helpers of the load balancers: the healthy candidate list and whether weights are all equal.
import type { EndpointState } from '../types.js';
import { passesHealthCheck } from '../health-check-state.js';

/**
 * Endpoints that may take traffic: healthy (EDS), passing active health checks (when configured) and not ejected
 * by outlier detection, as Envoy combines its failed_eds_health, failed_active_hc and failed_outlier_check flags.
 * Read when the LB is built: the cluster manager rebuilds on change. When that would leave none, balance over
 * every EDS-healthy endpoint (Envoy's panic mode, simplified): better a failing endpoint than none.
 */
export function healthyOf(endpoints: readonly EndpointState[]): EndpointState[] {
  const healthy: EndpointState[] = [];
  const usable: EndpointState[] = [];
  for (const e of endpoints) {
    if (e.healthy !== true) continue;
    healthy.push(e);
    if (e.outlier.ejectedUntilMs === null && passesHealthCheck(e.healthCheck)) usable.push(e);
  }
  return usable.length > 0 ? usable : healthy;
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
