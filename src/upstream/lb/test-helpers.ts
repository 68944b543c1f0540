// Test-only helpers for the load-balancer tests: a seeded random and endpoint fixtures.
import type { ClusterModel, LbPolicy } from '../../config/model.js';
import { DEFAULTS } from '../../config/model.js';
import type { EndpointState, LoadBalancer } from '../types.js';
import { newOutlierState } from '../outlier.js';
import type { ClusterStatsSink } from '../cluster-manager.js';

/** mulberry32: a small seeded PRNG so distributions are the same on every run. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function ep(i: number, weight = 1, healthy = true): EndpointState {
  return {
    key: `10.0.0.${i}:8080`,
    address: `10.0.0.${i}`,
    port: 8080,
    weight,
    region: '',
    zone: '',
    priority: 0,
    localityWeight: 0,
    healthy,
    activeRequests: 0,
    totalRequests: 0,
    failedRequests: 0,
    outlier: newOutlierState(),
    healthCheck: null,
  };
}

export function cluster(lbPolicy: LbPolicy, overrides: Partial<ClusterModel> = {}): ClusterModel {
  return {
    name: 'c',
    connectTimeoutMs: 1000,
    lbPolicy,
    choiceCount: 2,
    ringHash: { minRingSize: 1024, maxRingSize: DEFAULTS.maxRingSize },
    protocol: 'http1',
    circuitBreakers: DEFAULTS.circuitBreakers,
    maxIdleConnectionsPerEndpoint: 8,
    endpoints: [],
    ...overrides,
  };
}

/** Picks `n` times and counts picks per endpoint key (null picks under "null"). */
export function tally(lb: LoadBalancer, n: number, hash?: (i: number) => number | undefined): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const e = lb.pick(hash ? hash(i) : undefined);
    const k = e ? e.key : 'null';
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}

/** A cluster stats sink that records nothing; tests spread it and override what they watch. */
export function quietClusterStats(): ClusterStatsSink {
  return {
    onConnectionOpen() {},
    onConnectionClose() {},
    onResetDeferred() {},
    onPendingOverflow() {},
    connectFailure() {},
    requestOverflow() {},
    retried() {},
    retrySkipped() {},
    requestStarted() {},
    requestFinished() {},
    endpointEjected() {},
    endpointsEjected() {},
    healthCheck() {},
    endpointsUnhealthy() {},
  };
}
