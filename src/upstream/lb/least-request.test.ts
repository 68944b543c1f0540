// Least-request: P2C on equal weights, weight/(active+1) on unequal weights, health and empty sets.
import { describe, expect, it } from 'vitest';
import { createLoadBalancer } from './index.js';
import { LeastRequestLoadBalancer } from './least-request.js';
import { cluster, ep, seeded, tally } from './test-helpers.js';

describe('LeastRequestLoadBalancer', () => {
  it('spreads evenly when nothing is loaded', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4)];
    const t = tally(new LeastRequestLoadBalancer(eps, 2, seeded(1)), 40_000);
    for (const e of eps) expect(t.get(e.key)! / 40_000).toBeCloseTo(0.25, 1);
  });

  it('sends clearly fewer requests to an endpoint whose requests pile up (equal weights)', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4)];
    eps[0]!.activeRequests = 10;
    const t = tally(new LeastRequestLoadBalancer(eps, 2, seeded(2)), 40_000);
    // With 2 choices the loaded host wins only when both samples hit it: 1/16 of picks.
    expect(t.get(eps[0]!.key)! / 40_000).toBeCloseTo(1 / 16, 1);
    expect(t.get(eps[0]!.key)!).toBeLessThan(t.get(eps[1]!.key)! / 3);
  });

  it('reads activeRequests live at pick time', () => {
    const eps = [ep(1), ep(2)];
    const lb = new LeastRequestLoadBalancer(eps, 2, seeded(3));
    eps[1]!.activeRequests = 5;
    const t = tally(lb, 1000);
    expect(t.get(eps[0]!.key)!).toBeGreaterThan(700);
  });

  it('higher choiceCount avoids the loaded host more', () => {
    const eps = [ep(1), ep(2), ep(3), ep(4)];
    eps[0]!.activeRequests = 3;
    const two = tally(new LeastRequestLoadBalancer(eps, 2, seeded(4)), 20_000).get(eps[0]!.key)!;
    const four = tally(new LeastRequestLoadBalancer(eps, 4, seeded(4)), 20_000).get(eps[0]!.key) ?? 0;
    expect(four).toBeLessThan(two / 2);
  });

  it('respects weights when nothing is active', () => {
    const eps = [ep(1, 1), ep(2, 3)];
    const t = tally(new LeastRequestLoadBalancer(eps, 2, seeded(5)), 40_000);
    expect(t.get(eps[1]!.key)! / 40_000).toBeCloseTo(0.75, 1);
  });

  it('weighted: scales each weight by 1/(active+1)', () => {
    const eps = [ep(1, 2), ep(2, 1), ep(3, 1)];
    eps[0]!.activeRequests = 7; // effective 2/8 = 0.25 vs 1 and 1
    const t = tally(new LeastRequestLoadBalancer(eps, 2, seeded(6)), 45_000);
    expect(t.get(eps[0]!.key)! / 45_000).toBeCloseTo(0.25 / 2.25, 1);
    expect(t.get(eps[0]!.key)!).toBeLessThan(t.get(eps[1]!.key)! / 3);
  });

  it('skips unhealthy endpoints and returns null when none is healthy', () => {
    const eps = [ep(1, 1, false), ep(2), ep(3, 2, false)];
    const t = tally(createLoadBalancer(cluster('least_request'), eps, seeded(7)), 1000);
    expect([...t.keys()]).toEqual([eps[1]!.key]);
    expect(createLoadBalancer(cluster('least_request'), [ep(1, 1, false)]).pick(undefined)).toBeNull();
    expect(createLoadBalancer(cluster('least_request'), []).pick(undefined)).toBeNull();
  });
});
