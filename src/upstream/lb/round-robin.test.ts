// Round robin: exact rotation on equal weights, exact weighted shares via EDF, health and empty sets.
import { describe, expect, it } from 'vitest';
import { createLoadBalancer } from './index.js';
import { RoundRobinLoadBalancer } from './round-robin.js';
import { cluster, ep, seeded, tally } from './test-helpers.js';

describe('RoundRobinLoadBalancer', () => {
  it('rotates through equal-weight endpoints in order', () => {
    const eps = [ep(1), ep(2), ep(3)];
    const lb = new RoundRobinLoadBalancer(eps, () => 0);
    const keys = Array.from({ length: 6 }, () => lb.pick(undefined)!.key);
    expect(keys).toEqual([eps[0], eps[1], eps[2], eps[0], eps[1], eps[2]].map((e) => e!.key));
  });

  it('gives exact weighted shares over a full period', () => {
    const eps = [ep(1, 1), ep(2, 2), ep(3, 5)];
    const t = tally(new RoundRobinLoadBalancer(eps, seeded(1)), 8000);
    expect(t.get(eps[0]!.key)).toBeGreaterThanOrEqual(999);
    expect(t.get(eps[0]!.key)).toBeLessThanOrEqual(1001);
    expect(Math.abs(t.get(eps[1]!.key)! - 2000)).toBeLessThanOrEqual(1);
    expect(Math.abs(t.get(eps[2]!.key)! - 5000)).toBeLessThanOrEqual(1);
  });

  it('interleaves weighted picks rather than bursting', () => {
    const eps = [ep(1, 1), ep(2, 1), ep(3, 2)];
    const lb = new RoundRobinLoadBalancer(eps, () => 0);
    const seq = Array.from({ length: 8 }, () => lb.pick(undefined)!.key);
    // The heavy host never takes more than two in a row.
    for (let i = 2; i < seq.length; i++) expect(seq[i] === seq[i - 1] && seq[i] === seq[i - 2]).toBe(false);
  });

  it('skips unhealthy endpoints; null when none', () => {
    const eps = [ep(1), ep(2, 1, false), ep(3)];
    const t = tally(createLoadBalancer(cluster('round_robin'), eps, seeded(2)), 100);
    expect(t.get(eps[0]!.key)).toBe(50);
    expect(t.get(eps[2]!.key)).toBe(50);
    expect(t.has(eps[1]!.key)).toBe(false);
    expect(createLoadBalancer(cluster('round_robin'), [ep(1, 1, false)]).pick(undefined)).toBeNull();
    expect(createLoadBalancer(cluster('round_robin'), []).pick(undefined)).toBeNull();
  });
});
