// Weighted random load balancer: each pick is independent, in proportion to endpoint weight.
import type { EndpointState, LoadBalancer, Random } from '../types.js';
import { allWeightsEqual, weightOf } from './healthy.js';

export class RandomLoadBalancer implements LoadBalancer {
  private readonly hosts: EndpointState[];
  /** Cumulative weights (null when all are equal: a plain index pick is enough). */
  private readonly cumulative: Float64Array | null;
  private readonly total: number;

  constructor(endpoints: readonly EndpointState[], private readonly random: Random = Math.random) {
    this.hosts = [...endpoints];
    if (allWeightsEqual(this.hosts)) {
      this.cumulative = null;
      this.total = this.hosts.length;
    } else {
      this.cumulative = new Float64Array(this.hosts.length);
      let sum = 0;
      for (let i = 0; i < this.hosts.length; i++) this.cumulative[i] = sum += weightOf(this.hosts[i]!);
      this.total = sum;
    }
  }

  pick(_hash?: number): EndpointState | null {
    const n = this.hosts.length;
    if (n === 0) return null;
    if (this.cumulative === null) return this.hosts[Math.min(n - 1, Math.floor(this.random() * n))]!;
    return this.hosts[upperBound(this.cumulative, this.random() * this.total)]!;
  }
}

/** Index of the first cumulative weight strictly above `x` (clamped to the last entry). */
export function upperBound(cumulative: Float64Array, x: number): number {
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (cumulative[mid]! > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
