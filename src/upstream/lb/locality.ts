// Locality-weighted balancing within one priority level (Envoy's locality weighted LB): a locality is picked in
// proportion to its effective weight, then an endpoint inside it with the cluster's policy.
import type { EndpointState, LoadBalancer, Random } from '../types.js';
import { isUsable } from './healthy.js';
import { upperBound } from './random.js';

/** Builds the cluster's policy balancer over a fixed candidate list. */
export type PolicyFactory = (hosts: readonly EndpointState[]) => LoadBalancer;

/**
 * Envoy's effective locality weight: weight × min(1, factor × usable / total), so a locality loses share only
 * once fewer than 1/factor of its endpoints are usable (with 1.4: below ~72 %), and in proportion after that.
 */
export function effectiveLocalityWeight(weight: number, usable: number, total: number, overprovisioningFactor: number): number {
  if (total === 0 || weight <= 0) return 0;
  return weight * Math.min(1, ((overprovisioningFactor / 100) * usable) / total);
}

/**
 * Picks a locality by cumulative effective weight (a random draw, where Envoy runs a weighted round robin over
 * localities: the same shares, without a schedule to keep), then delegates to that locality's balancer.
 */
export class LocalityLoadBalancer implements LoadBalancer {
  constructor(
    private readonly localities: readonly LoadBalancer[],
    private readonly cumulative: Float64Array,
    private readonly random: Random,
  ) {}

  pick(hash: number | undefined): EndpointState | null {
    const total = this.cumulative[this.cumulative.length - 1]!;
    return this.localities[upperBound(this.cumulative, this.random() * total)]!.pick(hash);
  }
}

/** Localities of `hosts` (one priority level) keyed by region and zone, in first-seen order. */
function byLocality(hosts: readonly EndpointState[]): EndpointState[][] {
  const groups = new Map<string, EndpointState[]>();
  for (const h of hosts) {
    const key = `${h.region}\u0000${h.zone}`;
    let g = groups.get(key);
    if (g === undefined) groups.set(key, (g = []));
    g.push(h);
  }
  return [...groups.values()];
}

/**
 * A balancer over the usable endpoints of `hosts` that first picks a locality by effective weight; null when no
 * locality has any (no weights given, or none usable): the caller then balances over the whole level, as Envoy
 * falls back to the level's hosts when it cannot choose a locality.
 */
export function buildLocalityLoadBalancer(
  hosts: readonly EndpointState[],
  overprovisioningFactor: number,
  random: Random,
  policy: PolicyFactory,
): LoadBalancer | null {
  const balancers: LoadBalancer[] = [];
  const weights: number[] = [];
  for (const group of byLocality(hosts)) {
    const usable = group.filter(isUsable);
    // Endpoints of one locality share its weight; the first one's stands for all.
    const w = effectiveLocalityWeight(group[0]!.localityWeight, usable.length, group.length, overprovisioningFactor);
    if (w <= 0) continue;
    balancers.push(policy(usable));
    weights.push(w);
  }
  if (balancers.length === 0) return null;
  if (balancers.length === 1) return balancers[0]!;
  const cumulative = new Float64Array(weights.length);
  let sum = 0;
  for (let i = 0; i < weights.length; i++) cumulative[i] = sum += weights[i]!;
  return new LocalityLoadBalancer(balancers, cumulative, random);
}
