// Least-request load balancer after Envoy's: power-of-N-choices on equal weights, weight/(active+1) otherwise.
import type { EndpointState, LoadBalancer, Random } from '../types.js';
import { allWeightsEqual, weightOf } from './healthy.js';

export class LeastRequestLoadBalancer implements LoadBalancer {
  private readonly hosts: EndpointState[];
  private readonly choiceCount: number;
  /** Weighted case: base weights and a scratch array reused by every pick (no allocation per request). */
  private readonly weights: Float64Array | null;
  private readonly effective: Float64Array | null;

  constructor(
    endpoints: readonly EndpointState[],
    choiceCount: number,
    private readonly random: Random = Math.random,
  ) {
    this.hosts = [...endpoints];
    this.choiceCount = choiceCount >= 2 ? Math.floor(choiceCount) : 2;
    if (this.hosts.length > 1 && !allWeightsEqual(this.hosts)) {
      this.weights = new Float64Array(this.hosts.length);
      for (let i = 0; i < this.hosts.length; i++) this.weights[i] = weightOf(this.hosts[i]!);
      this.effective = new Float64Array(this.hosts.length);
    } else {
      this.weights = null;
      this.effective = null;
    }
  }

  pick(_hash?: number): EndpointState | null {
    const hosts = this.hosts;
    const n = hosts.length;
    if (n === 0) return null;
    if (n === 1) return hosts[0]!;
    if (this.weights === null) {
      // Power of N choices, sampling with replacement as Envoy does; ties keep the earlier sample.
      let best = hosts[Math.min(n - 1, Math.floor(this.random() * n))]!;
      for (let c = 1; c < this.choiceCount; c++) {
        const h = hosts[Math.min(n - 1, Math.floor(this.random() * n))]!;
        if (h.activeRequests < best.activeRequests) best = h;
      }
      return best;
    }
    // Weighted: weight / (active + 1)^bias with Envoy's default bias 1.0, recomputed from live counts on every
    // pick (Envoy refreshes only the picked host's EDF entry; a full O(n) pass is exact and cheap for sidecar-size
    // clusters). A bias of 1 needs no Math.pow.
    const w = this.weights;
    const eff = this.effective!;
    let sum = 0;
    for (let i = 0; i < n; i++) {
      const active = hosts[i]!.activeRequests;
      const e = w[i]! / ((active > 0 ? active : 0) + 1);
      eff[i] = e;
      sum += e;
    }
    let x = this.random() * sum;
    for (let i = 0; i < n - 1; i++) {
      x -= eff[i]!;
      if (x < 0) return hosts[i]!;
    }
    return hosts[n - 1]!;
  }
}
