// The priority layer above the per-policy balancers (Envoy's LoadBalancerBase): endpoints are grouped by EDS
// priority, each level gets its share of requests from the priority load (priority-load.ts), a request picks a
// level by that share and then an endpoint inside it. All of it is computed when the cluster rebuilds its
// balancer (membership, health or ejection changes); a pick draws one number and walks at most a few levels.
import { DEFAULTS, type ClusterModel } from '../../config/model.js';
import type { EndpointState, LoadBalancer, Random } from '../types.js';
import { isPanicCandidate, isUsable } from './healthy.js';
import { buildLocalityLoadBalancer, type PolicyFactory } from './locality.js';
import { computePriorityLoad, type LevelCounts } from './priority-load.js';

export class PriorityLoadBalancer implements LoadBalancer {
  /** Cumulative load per level, in percent: level i takes draws in [cumulative[i-1], cumulative[i]). */
  private readonly cumulative: Uint8Array;

  constructor(
    load: readonly number[],
    private readonly levels: readonly LoadBalancer[],
    private readonly random: Random,
  ) {
    this.cumulative = new Uint8Array(load.length);
    let sum = 0;
    for (let i = 0; i < load.length; i++) this.cumulative[i] = sum += load[i]!;
  }

  pick(hash: number | undefined): EndpointState | null {
    // With a request hash (ring_hash) the level comes from the hash too, so one key stays on one level (as Envoy's
    // chooseHostSet does with the context's hash); otherwise a uniform draw in 0..99.
    const x = hash === undefined ? Math.floor(this.random() * 100) : (hash >>> 0) % 100;
    const n = this.levels.length;
    let i = 0;
    while (i < n - 1 && x >= this.cumulative[i]!) i++;
    const picked = this.levels[i]!.pick(hash);
    if (picked !== null) return picked;
    // Defensive: the loads give a level only what it can serve (with nothing usable and panic disabled, no level
    // can); should one still come back empty, another level that answers beats "no healthy upstream".
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const other = this.levels[j]!.pick(hash);
      if (other !== null) return other;
    }
    return null;
  }
}

/** Endpoints per priority level, indexed by priority; a level nobody uses stays empty (Envoy keeps it, with no health). */
function byPriority(endpoints: readonly EndpointState[]): EndpointState[][] {
  let max = 0;
  for (const e of endpoints) if (e.priority > max) max = e.priority;
  const levels: EndpointState[][] = Array.from({ length: max + 1 }, () => []);
  for (const e of endpoints) levels[e.priority]!.push(e);
  return levels;
}

function countsOf(hosts: readonly EndpointState[]): LevelCounts {
  let usable = 0;
  let panicCandidates = 0;
  for (const h of hosts) {
    if (isUsable(h)) usable++;
    if (isPanicCandidate(h)) panicCandidates++;
  }
  return { total: hosts.length, usable, panicCandidates };
}

/**
 * The balancer of one cluster: `policy` (round robin, least request, ...) over the right endpoints of each level,
 * behind a locality pick when the cluster is locality-weighted, behind a level pick when there is more than one
 * level. A single level without locality weighting is the policy balancer itself: no extra step per request.
 */
export function buildPriorityLoadBalancer(
  cluster: ClusterModel,
  endpoints: readonly EndpointState[],
  random: Random,
  policy: PolicyFactory,
): LoadBalancer {
  const factor = cluster.overprovisioningFactor ?? DEFAULTS.overprovisioningFactor;
  const threshold = cluster.healthyPanicThreshold ?? DEFAULTS.healthyPanicThreshold;
  const levels = byPriority(endpoints);
  const { load, panic } = computePriorityLoad(levels.map(countsOf), factor, threshold);
  // Envoy applies locality weights to ring hash by scaling host weights on one ring; not done here: a ring_hash
  // cluster balances each level over its usable endpoints, localities unweighted.
  const localities = cluster.localityWeighted === true && cluster.lbPolicy !== 'ring_hash';
  const balancers = levels.map((hosts, i) => {
    // In panic Envoy ignores localities too: the whole level, health disregarded.
    if (panic[i]) return policy(hosts.filter(isPanicCandidate));
    return (localities ? buildLocalityLoadBalancer(hosts, factor, random, policy) : null) ?? policy(hosts.filter(isUsable));
  });
  if (balancers.length === 1) return balancers[0]!;
  return new PriorityLoadBalancer(load, balancers, random);
}
