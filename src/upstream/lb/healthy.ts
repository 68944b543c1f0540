// Shared helpers of the load balancers: the healthy candidate list and whether weights are all equal.
import type { EndpointState } from '../types.js';

/**
 * Endpoints that may take traffic: healthy and not ejected by outlier detection. Read when the LB is built: the
 * cluster manager rebuilds on change. When ejection would leave none, balance over every healthy endpoint
 * (Envoy's panic mode, simplified): better a failing endpoint than none.
 */
export function healthyOf(endpoints: readonly EndpointState[]): EndpointState[] {
  const healthy: EndpointState[] = [];
  const notEjected: EndpointState[] = [];
  for (const e of endpoints) {
    if (e.healthy !== true) continue;
    healthy.push(e);
    if (e.outlier.ejectedUntilMs === null) notEjected.push(e);
  }
  return notEjected.length > 0 ? notEjected : healthy;
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
