// Ring hash: stickiness, minimal disruption on removal, weights, ring bounds, health and empty sets.
import { describe, expect, it } from 'vitest';
import { hashString } from './hash.js';
import { createLoadBalancer } from './index.js';
import { RING_ENTRY_CAP, RingHashLoadBalancer } from './ring-hash.js';
import { cluster, ep, seeded, tally } from './test-helpers.js';

const opts = { minRingSize: 1024, maxRingSize: 8_388_608 };
const keyHash = (i: number) => hashString(`user-${i}`);

function mapping(lb: RingHashLoadBalancer, n: number): string[] {
  return Array.from({ length: n }, (_, i) => lb.pick(keyHash(i))!.key);
}

describe('RingHashLoadBalancer', () => {
  it('maps the same hash to the same endpoint, also across rebuilds of the same set', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4)];
    const a = new RingHashLoadBalancer(eps, opts, seeded(1));
    const b = new RingHashLoadBalancer([...eps], opts, seeded(2));
    expect(mapping(a, 2000)).toEqual(mapping(a, 2000));
    expect(mapping(a, 2000)).toEqual(mapping(b, 2000));
  });

  it('spreads keys roughly evenly', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4)];
    const t = tally(new RingHashLoadBalancer(eps, opts), 40_000, keyHash);
    for (const e of eps) expect(Math.abs(t.get(e.key)! - 10_000)).toBeLessThan(1500);
  });

  it('removing one endpoint moves only its keys', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4), ep(5)];
    const before = mapping(new RingHashLoadBalancer(eps, opts), 10_000);
    const after = mapping(new RingHashLoadBalancer(eps.filter((_, i) => i !== 2), opts), 10_000);
    let moved = 0;
    for (let i = 0; i < before.length; i++) {
      if (before[i] !== eps[2]!.key) expect(after[i]).toBe(before[i]);
      else moved++;
    }
    expect(moved).toBeGreaterThan(1000);
    expect(after).not.toContain(eps[2]!.key);
  });

  it('adding one endpoint only takes keys for itself', () => {
    const eps = [ep(1), ep(2), ep(3)];
    const before = mapping(new RingHashLoadBalancer(eps, opts), 10_000);
    const after = mapping(new RingHashLoadBalancer([...eps, ep(9)], opts), 10_000);
    for (let i = 0; i < before.length; i++) if (after[i] !== ep(9).key) expect(after[i]).toBe(before[i]);
  });

  it('gives entries in proportion to weight', () => {
    const eps = [ep(1, 1), ep(2, 3)];
    const lb = new RingHashLoadBalancer(eps, opts);
    expect(lb.size).toBe(4096);
    const t = tally(lb, 40_000, keyHash);
    expect(t.get(eps[1]!.key)! / 40_000).toBeCloseTo(0.75, 1);
  });

  it('keeps the ring within bounds', () => {
    const many = Array.from({ length: 200 }, (_, i) => ep(i + 1));
    expect(new RingHashLoadBalancer(many, { minRingSize: 1024, maxRingSize: 8_388_608 }).size).toBeLessThanOrEqual(
      RING_ENTRY_CAP,
    );
    expect(new RingHashLoadBalancer(many, { minRingSize: 64, maxRingSize: 4096 }).size).toBeLessThanOrEqual(4096 + 200);
    expect(new RingHashLoadBalancer([ep(1)], { minRingSize: 16, maxRingSize: 64 }).size).toBe(16);
  });

  it('wraps around past the last entry and picks at random without a hash', () => {
    const eps = [ep(1), ep(2)];
    const lb = new RingHashLoadBalancer(eps, opts, seeded(3));
    const first = lb.pick(0)!;
    expect(lb.pick(0xffffffff)).toBe(first);
    const t = tally(lb, 2000);
    expect(t.size).toBe(2);
  });

  it('skips unhealthy endpoints; null when none', () => {
    const eps = [ep(1), ep(2, 1, false), ep(3)];
    const lb = createLoadBalancer(cluster('ring_hash'), eps);
    const t = tally(lb, 5000, keyHash);
    expect(t.has(eps[1]!.key)).toBe(false);
    expect(createLoadBalancer(cluster('ring_hash'), [ep(1, 1, false)]).pick(42)).toBeNull();
    expect(createLoadBalancer(cluster('ring_hash'), []).pick(undefined)).toBeNull();
  });
});
