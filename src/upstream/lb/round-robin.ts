// Weighted round robin: plain rotation when weights are equal, earliest-deadline-first (as Envoy's EdfScheduler) otherwise.
import type { EndpointState, LoadBalancer, Random } from '../types.js';
import { allWeightsEqual, weightOf } from './healthy.js';

export class RoundRobinLoadBalancer implements LoadBalancer {
  private readonly hosts: EndpointState[];
  private next: number;
  /** EDF state (weighted case only): a binary min-heap of host indices ordered by (deadline, order). */
  private readonly heap: Int32Array | null = null;
  private readonly deadline: Float64Array | null = null;
  private readonly order: Float64Array | null = null;
  private readonly step: Float64Array | null = null;
  private seq = 0;

  constructor(endpoints: readonly EndpointState[], random: Random = Math.random) {
    this.hosts = [...endpoints];
    const n = this.hosts.length;
    // Start at a random offset, as Envoy does, so a fleet of proxies rebuilt together does not hit one host in step.
    this.next = n > 0 ? Math.min(n - 1, Math.floor(random() * n)) : 0;
    if (n > 1 && !allWeightsEqual(this.hosts)) {
      this.heap = new Int32Array(n);
      this.deadline = new Float64Array(n);
      this.order = new Float64Array(n);
      this.step = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        this.step[i] = 1 / weightOf(this.hosts[i]!);
        // A random first deadline within one period spreads the start like the random offset above.
        this.deadline[i] = random() * this.step[i]!;
        this.order[i] = this.seq++;
        this.heap[i] = i;
      }
      for (let i = (n >>> 1) - 1; i >= 0; i--) this.siftDown(i);
    }
  }

  pick(_hash?: number): EndpointState | null {
    const n = this.hosts.length;
    if (n === 0) return null;
    if (this.heap === null) {
      const h = this.hosts[this.next]!;
      this.next = this.next + 1 === n ? 0 : this.next + 1;
      return h;
    }
    const i = this.heap[0]!;
    this.deadline![i] = this.deadline![i]! + this.step![i]!;
    this.order![i] = this.seq++;
    this.siftDown(0);
    return this.hosts[i]!;
  }

  private less(a: number, b: number): boolean {
    const da = this.deadline![a]!;
    const db = this.deadline![b]!;
    return da < db || (da === db && this.order![a]! < this.order![b]!);
  }

  private siftDown(pos: number): void {
    const heap = this.heap!;
    const n = heap.length;
    const item = heap[pos]!;
    for (;;) {
      let child = 2 * pos + 1;
      if (child >= n) break;
      if (child + 1 < n && this.less(heap[child + 1]!, heap[child]!)) child++;
      if (!this.less(heap[child]!, item)) break;
      heap[pos] = heap[child]!;
      pos = child;
    }
    heap[pos] = item;
  }
}
