// Load-balancer factory: one policy per file, chosen by the cluster's lbPolicy.
import type { ClusterModel } from '../../config/model.js';
import type { EndpointState, LoadBalancer, Random } from '../types.js';
import { LeastRequestLoadBalancer } from './least-request.js';
import { RandomLoadBalancer } from './random.js';
import { RingHashLoadBalancer } from './ring-hash.js';
import { RoundRobinLoadBalancer } from './round-robin.js';
import { buildPriorityLoadBalancer } from './priority.js';

export { LeastRequestLoadBalancer } from './least-request.js';
export { RandomLoadBalancer } from './random.js';
export { RingHashLoadBalancer, RING_ENTRY_CAP } from './ring-hash.js';
export { RoundRobinLoadBalancer } from './round-robin.js';
export { hashString, combineHashes } from './hash.js';

/**
 * Builds the LB for one cluster over `endpoints` (every endpoint of the cluster, in the cluster manager's order):
 * priority levels and localities (priority.ts) above the cluster's policy. Health, ejections and weights are read
 * now: rebuild when they or the list change. `activeRequests` is read live at pick time.
 */
export function createLoadBalancer(
  cluster: ClusterModel,
  endpoints: readonly EndpointState[],
  random: Random = Math.random,
): LoadBalancer {
  return buildPriorityLoadBalancer(cluster, endpoints, random, (hosts) => createPolicyLoadBalancer(cluster, hosts, random));
}

/** The cluster's policy over exactly `endpoints` (the candidates the priority layer chose; no filtering here). */
export function createPolicyLoadBalancer(
  cluster: ClusterModel,
  endpoints: readonly EndpointState[],
  random: Random = Math.random,
): LoadBalancer {
  switch (cluster.lbPolicy) {
    case 'round_robin':
      return new RoundRobinLoadBalancer(endpoints, random);
    case 'random':
      return new RandomLoadBalancer(endpoints, random);
    case 'ring_hash':
      return new RingHashLoadBalancer(endpoints, cluster.ringHash, random);
    case 'least_request':
    default:
      return new LeastRequestLoadBalancer(endpoints, cluster.choiceCount, random);
  }
}
