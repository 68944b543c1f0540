// Shared helpers of the load balancers: the healthy candidate list and whether weights are all equal.
import type { EndpointState } from '../types.js';

/** Endpoints that may take traffic. Health is read when the LB is built: the cluster manager rebuilds on change. */
export function healthyOf(endpoints: readonly EndpointState[]): EndpointState[] {
  const out: EndpointState[] = [];
  for (const e of endpoints) if (e.healthy === true) out.push(e);
  return out;
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
