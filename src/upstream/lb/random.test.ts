// Weighted random: shares follow weights within tolerance, health and empty sets.
import { describe, expect, it } from 'vitest';
import { createLoadBalancer } from './index.js';
import { RandomLoadBalancer } from './random.js';
import { cluster, ep, seeded, tally } from './test-helpers.js';

describe('RandomLoadBalancer', () => {
  it('is uniform on equal weights', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4), ep(5)];
    const t = tally(new RandomLoadBalancer(eps, seeded(1)), 50_000);
    for (const e of eps) expect(Math.abs(t.get(e.key)! - 10_000)).toBeLessThan(500);
  });

  it('follows weights', () => {
    const eps = [ep(1, 1), ep(2, 3), ep(3, 6)];
    const t = tally(new RandomLoadBalancer(eps, seeded(2)), 100_000);
    expect(Math.abs(t.get(eps[0]!.key)! - 10_000)).toBeLessThan(700);
    expect(Math.abs(t.get(eps[1]!.key)! - 30_000)).toBeLessThan(1000);
    expect(Math.abs(t.get(eps[2]!.key)! - 60_000)).toBeLessThan(1000);
  });

  it('handles random() edge values', () => {
    const eps = [ep(1, 1), ep(2, 3)];
    expect(new RandomLoadBalancer(eps, () => 0).pick(undefined)!.key).toBe(eps[0]!.key);
    expect(new RandomLoadBalancer(eps, () => 0.9999999).pick(undefined)!.key).toBe(eps[1]!.key);
    expect(new RandomLoadBalancer([ep(1), ep(2)], () => 0.9999999999).pick(undefined)!.key).toBe(ep(2).key);
  });

  it('skips unhealthy endpoints; null when none', () => {
    const eps = [ep(1, 5, false), ep(2, 1)];
    const t = tally(createLoadBalancer(cluster('random'), eps, seeded(3)), 500);
    expect([...t.keys()]).toEqual([eps[1]!.key]);
    expect(createLoadBalancer(cluster('random'), []).pick(undefined)).toBeNull();
  });
});
