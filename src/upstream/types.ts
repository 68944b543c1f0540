// Contracts between the cluster manager, the load balancers and the connection pools.
import type { HealthCheckState } from './health-check-state.js';
import type { OutlierState } from './outlier.js';

/**
 * Runtime state of one endpoint. Lives in the EndpointStore keyed by "address:port" within a cluster, so it
 * survives config swaps: a changed cluster keeps the active-request counts (and later ejections) of endpoints
 * that remain.
 */
export interface EndpointState {
  /** "address:port" (IPv6 addresses in brackets). */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** From the latest EDS/cluster config; >= 1. */
  weight: number;
  region: string;
  zone: string;
  /** EDS priority level of the endpoint's locality (0 = first choice). */
  priority: number;
  /** EDS load_balancing_weight of the endpoint's locality; 0 = none. */
  localityWeight: number;
  /** EDS health status (HEALTHY/UNKNOWN → true). */
  healthy: boolean;
  /** Requests sent and not yet finished: what least_request balances on. */
  activeRequests: number;
  /** Requests ever sent to this endpoint (for /clusters). */
  totalRequests: number;
  /** Requests that ended in a 5xx or a connect/reset failure (for /clusters). */
  failedRequests: number;
  /** Outlier detection counters and ejection (src/upstream/outlier.ts). */
  outlier: OutlierState;
  /** Active health checking's status (src/upstream/health-check-state.ts); null when the cluster has none. */
  healthCheck: HealthCheckState | null;
}

/** A load balancer over a fixed list of endpoints; rebuilt when the list or the weights change. */
export interface LoadBalancer {
  /**
   * Picks the endpoint for one request, or null when none can take it.
   * `hash` is the request's hash key (ring_hash only; undefined means "no key": pick at random).
   */
  pick(hash: number | undefined): EndpointState | null;
}

/** Source of randomness in [0, 1); injected so tests are deterministic. */
export type Random = () => number;
