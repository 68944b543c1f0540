// The priority and locality layer: level choice by priority load, panic inside a level, locality shares by
// effective weight (Envoy's locality weighted LB table), and the single-level case left to the policy alone.
import { describe, expect, it } from 'vitest';
import type { LbPolicy } from '../../config/model.js';
import type { EndpointState } from '../types.js';
import { hashString } from './hash.js';
import { createLoadBalancer } from './index.js';
import { effectiveLocalityWeight } from './locality.js';
import { PriorityLoadBalancer } from './priority.js';
import { cluster, ep, seeded, tally } from './test-helpers.js';

function at(i: number, priority: number, o: Partial<EndpointState> = {}): EndpointState {
  return { ...ep(i), priority, ...o };
}

const eject = (e: EndpointState): EndpointState => {
  e.outlier.ejectedUntilMs = 1;
  return e;
};

/** Picks per priority level. */
function perLevel(eps: readonly EndpointState[], counts: Map<string, number>): number[] {
  const out: number[] = [];
  for (const e of eps) out[e.priority] = (out[e.priority] ?? 0) + (counts.get(e.key) ?? 0);
  return out;
}

const POLICIES: LbPolicy[] = ['round_robin', 'least_request', 'random', 'ring_hash'];

describe('priority levels', () => {
  it('sends everything to priority 0 while it is healthy, for every policy', () => {
    for (const policy of POLICIES) {
      const eps = [at(1, 0), at(2, 0), at(3, 1)];
      const lb = createLoadBalancer(cluster(policy), eps, seeded(1));
      expect(lb).toBeInstanceOf(PriorityLoadBalancer);
      const t = tally(lb, 2000, policy === 'ring_hash' ? (i) => hashString(`k${i}`) : undefined);
      expect(perLevel(eps, t), policy).toEqual([2000, 0]);
    }
  });

  it('spills 30 % to priority 1 when half of priority 0 is ejected (health 50 × 1.4 = 70)', () => {
    const eps = [eject(at(1, 0)), at(2, 0), at(3, 1)];
    const t = tally(createLoadBalancer(cluster('round_robin'), eps, seeded(2)), 10_000);
    const [p0, p1] = perLevel(eps, t);
    expect(t.get(eps[0]!.key) ?? 0).toBe(0);
    expect(Math.abs(p0! - 7000)).toBeLessThan(250);
    expect(Math.abs(p1! - 3000)).toBeLessThan(250);
  });

  it('moves everything to priority 1 when EDS marks priority 0 unhealthy, and to 2 when 1 is ejected too', () => {
    const eps = [at(1, 0, { healthy: false }), at(2, 0, { healthy: false }), at(3, 1), at(4, 2)];
    expect(perLevel(eps, tally(createLoadBalancer(cluster('least_request'), eps, seeded(3)), 1000))).toEqual([0, 1000, 0]);
    eject(eps[2]!);
    expect(perLevel(eps, tally(createLoadBalancer(cluster('least_request'), eps, seeded(3)), 1000))).toEqual([0, 0, 1000]);
  });

  it('keeps one hash key on one level (ring_hash picks the level from the hash)', () => {
    const eps = [eject(at(1, 0)), at(2, 0), at(3, 1), at(4, 1)];
    const lb = createLoadBalancer(cluster('ring_hash'), eps, seeded(4));
    for (let i = 0; i < 200; i++) {
      const h = hashString(`user-${i}`);
      const first = lb.pick(h)!;
      for (let k = 0; k < 3; k++) expect(lb.pick(h)).toBe(first);
    }
  });

  it('returns null when nothing can take traffic, and uses a lone endpoint with no extra layer', () => {
    expect(createLoadBalancer(cluster('round_robin'), [at(1, 0, { healthy: false }), at(2, 1, { healthy: false })]).pick(undefined)).toBeNull();
    expect(createLoadBalancer(cluster('round_robin'), [at(1, 0)])).not.toBeInstanceOf(PriorityLoadBalancer);
  });
});

describe('panic', () => {
  it('balances over the whole level below the panic threshold, over the usable ones above it or when disabled', () => {
    const eps = () => [eject(at(1, 0)), eject(at(2, 0)), eject(at(3, 0)), at(4, 0)];
    // 25 % usable < 50 %: panic, every endpoint the control plane calls healthy takes traffic.
    expect(tally(createLoadBalancer(cluster('round_robin'), eps(), seeded(5)), 400).size).toBe(4);
    // Panic disabled (healthy_panic_threshold 0): only the usable one.
    const off = tally(createLoadBalancer(cluster('round_robin', { healthyPanicThreshold: 0 }), eps(), seeded(5)), 400);
    expect([...off.keys()]).toEqual([at(4, 0).key]);
  });

  it('never uses endpoints EDS marks unhealthy, even in panic', () => {
    const eps = [at(1, 0, { healthy: false }), eject(at(2, 0)), eject(at(3, 0))];
    const t = tally(createLoadBalancer(cluster('random'), eps, seeded(6)), 600);
    expect(t.has(eps[0]!.key)).toBe(false);
    expect(t.size).toBe(2);
  });
});

describe('locality-weighted balancing', () => {
  /** Locality X (weight 1) and Y (weight 2), ten endpoints each, `usableX` of X's usable. */
  function xy(usableX: number, opts: { weighted?: boolean; yWeight?: number } = {}): EndpointState[] {
    const eps: EndpointState[] = [];
    for (let i = 0; i < 10; i++) {
      const e = at(i + 1, 0, { zone: 'x', localityWeight: 1 });
      eps.push(i < usableX ? e : eject(e));
    }
    for (let i = 0; i < 10; i++) eps.push(at(i + 101, 0, { zone: 'y', localityWeight: opts.yWeight ?? 2 }));
    return eps;
  }

  function shareOfX(eps: EndpointState[], weighted = true, picks = 30_000): number {
    const lb = createLoadBalancer(cluster('round_robin', { localityWeighted: weighted }), eps, seeded(7));
    const t = tally(lb, picks);
    let x = 0;
    for (const e of eps) if (e.zone === 'x') x += t.get(e.key) ?? 0;
    return (100 * x) / picks;
  }

  it("matches Envoy's table: X's share as its endpoints fail (weights 1 and 2, factor 1.4)", () => {
    // Envoy's locality weight page: 100 % → 33, 70 % → 33, 50 % → 26, 25 % → 15, 0 % → 0 (X's percent of traffic).
    const rows: [number, number][] = [[10, 33.3], [7, 32.9], [5, 25.9], [0, 0]];
    for (const [usable, expected] of rows) expect(Math.abs(shareOfX(xy(usable)) - expected), `${usable}/10 usable`).toBeLessThan(1);
    expect(Math.round((100 * effectiveLocalityWeight(1, 25, 100, 140)) / (effectiveLocalityWeight(1, 25, 100, 140) + 2))).toBe(15);
    expect(effectiveLocalityWeight(1, 69, 100, 140) / (effectiveLocalityWeight(1, 69, 100, 140) + 2)).toBeCloseTo(0.326, 3);
  });

  it('ignores locality weights unless the cluster enables locality-weighted balancing', () => {
    expect(Math.abs(shareOfX(xy(10), false) - 50)).toBeLessThan(1);
  });

  it('gives a locality without a weight no load when enabled (Envoy), and falls back to the level when none has one', () => {
    const eps = xy(10, { yWeight: 0 });
    expect(shareOfX(eps, true, 3000)).toBe(100);
    for (const e of eps) e.localityWeight = 0;
    expect(Math.abs(shareOfX(eps, true, 3000) - 50)).toBeLessThan(1);
  });

  it('weights localities within each priority level separately', () => {
    const eps = [...xy(10), at(201, 1, { zone: 'z', localityWeight: 5 })];
    const lb = createLoadBalancer(cluster('random', { localityWeighted: true }), eps, seeded(8));
    expect(perLevel(eps, tally(lb, 3000))).toEqual([3000, 0]);
  });
});
