// The cluster's shell around the outlier core: ejections reach the load balancer, panic over all healthy
// endpoints, the interval timer's lifetime, and endpoint state across config swaps.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEFAULTS, type ClusterModel, type OutlierDetectionModel } from '../config/model.js';
import { UpstreamCluster, type ClusterStatsSink } from './cluster-manager.js';
import { cluster, quietClusterStats, seeded } from './lb/test-helpers.js';
import type { EndpointState } from './types.js';

const od: OutlierDetectionModel = { ...DEFAULTS.outlierDetection, consecutive5xx: 2, consecutiveGatewayFailure: 5, intervalMs: 100, baseEjectionTimeMs: 1_000, maxEjectionPercent: 100 };

function sink(): ClusterStatsSink & { ejections: number; ejectedNow: number; reasons: string[] } {
  const s = {
    ejections: 0,
    reasons: [] as string[],
    ejectedNow: 0,
    ...quietClusterStats(),
    endpointEjected(reason: string) {
      s.ejections++;
      s.reasons.push(reason);
    },
    endpointsEjected(n: number) {
      s.ejectedNow = n;
    },
  };
  return s;
}

const model = (o: Partial<ClusterModel> = {}): ClusterModel =>
  cluster('round_robin', {
    endpoints: [1, 2, 3].map((i) => ({ address: `10.0.0.${i}`, port: 80, weight: 1, region: '', zone: '', healthy: true })),
    outlierDetection: od,
    ...o,
  });

function fail(c: UpstreamCluster, key: string, times: number): void {
  for (let i = 0; i < times; i++) {
    // Pick until the endpoint comes up (round robin), then end the call as a 503.
    let e: EndpointState | null = null;
    for (let j = 0; j < 10 && e?.key !== key; j++) {
      const picked = c.startCall(undefined, true);
      if (picked === null || typeof picked === 'symbol') throw new Error('no pick');
      if (picked.key !== key) c.endCall(picked, true, 'ignored');
      else e = picked;
    }
    c.endCall(e!, true, 'gatewayFailure');
  }
}

function picks(c: UpstreamCluster, n: number): Set<string> {
  const seen = new Set<string>();
  for (let i = 0; i < n; i++) {
    const e = c.startCall(undefined, true);
    if (e === null || typeof e === 'symbol') throw new Error('no pick');
    seen.add(e.key);
    c.endCall(e, true, 'ignored');
  }
  return seen;
}

afterEach(() => vi.useRealTimers());

describe('UpstreamCluster outlier detection', () => {
  it('takes an ejected endpoint out of balancing, and puts it back on the tick after its time', () => {
    let now = 0;
    const stats = sink();
    const c = new UpstreamCluster(model(), stats, seeded(1), () => now);
    fail(c, '10.0.0.1:80', 2);
    expect(stats).toMatchObject({ ejections: 1, ejectedNow: 1, reasons: ['consecutive_5xx'] });
    expect(c.status().endpoints[0]).toMatchObject({ ejectedUntil: new Date(1_000).toISOString(), timesEjected: 1, ejectionReason: 'consecutive_5xx' });
    expect(picks(c, 20)).toEqual(new Set(['10.0.0.2:80', '10.0.0.3:80']));
    now = 1_000;
    c.outlierTick();
    expect(stats.ejectedNow).toBe(0);
    expect(picks(c, 20).size).toBe(3);
    c.destroy();
  });

  it('balances over every healthy endpoint when all are ejected (panic)', () => {
    const c = new UpstreamCluster(model(), sink(), seeded(1), () => 0);
    for (const k of ['10.0.0.1:80', '10.0.0.2:80', '10.0.0.3:80']) fail(c, k, 2);
    expect(c.status().endpoints.every((e) => e.ejectedUntil !== null)).toBe(true);
    expect(picks(c, 30).size).toBe(3);
    c.destroy();
  });

  it('keeps ejections across a config swap, drops them with outlierDetection, and owns one timer', () => {
    vi.useFakeTimers();
    const stats = sink();
    const c = new UpstreamCluster(model(), stats, seeded(1), () => 0);
    expect(vi.getTimerCount()).toBe(1);
    fail(c, '10.0.0.1:80', 2);
    c.update(model({ endpoints: [...model().endpoints] }));
    expect(vi.getTimerCount()).toBe(1);
    expect(c.status().endpoints[0]!.ejectedUntil).not.toBeNull();
    expect(picks(c, 20).has('10.0.0.1:80')).toBe(false);
    const { outlierDetection: _drop, ...without } = model();
    c.update(without);
    expect(vi.getTimerCount()).toBe(0);
    expect(stats.ejectedNow).toBe(0);
    expect(c.status().endpoints[0]).toMatchObject({ ejectedUntil: null, timesEjected: 0 });
    expect(picks(c, 20).size).toBe(3);
    c.update(model());
    expect(vi.getTimerCount()).toBe(1);
    c.close();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('runs the success-rate detector at the interval tick: reason to the stats, rate and reason on /clusters', () => {
    let now = 0;
    const stats = sink();
    const five = [1, 2, 3, 4, 5].map((i) => ({ address: `10.0.0.${i}`, port: 80, weight: 1, region: '', zone: '', healthy: true }));
    const c = new UpstreamCluster(model({ endpoints: five, outlierDetection: { ...od, consecutive5xx: 1_000, successRate: { ...od.successRate, requestVolume: 10 } } }), stats, seeded(1), () => now);
    // Round robin: 100 calls give each endpoint 20; the first fails every other one (never twice in a row).
    let n = 0;
    for (let i = 0; i < 100; i++) {
      const e = c.startCall(undefined, true);
      if (e === null || typeof e === 'symbol') throw new Error('no pick');
      const fails = e.key === '10.0.0.1:80' && n++ % 2 === 0;
      c.endCall(e, true, fails ? 'gatewayFailure' : 'success');
    }
    now = 100;
    c.outlierTick();
    expect(stats).toMatchObject({ reasons: ['success_rate'], ejectedNow: 1 });
    const [first, second] = c.status().endpoints;
    expect(first).toMatchObject({ ejectionReason: 'success_rate', successRate: 50 });
    expect(second).toMatchObject({ ejectionReason: null, successRate: 100 });
    expect(picks(c, 20).has('10.0.0.1:80')).toBe(false);
    c.destroy();
  });
});
