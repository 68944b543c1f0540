// Cluster manager: the live upstream clusters of the current config, with their endpoints, load balancer
// and connection pools. Endpoint state (active requests, counters) survives config swaps, keyed by address.
import type { ClusterModel, EndpointModel } from '../config/model.js';
import type { ClusterStatus } from '../admin/types.js';
import { PendingLimit, type ConnectionPool, type PoolEvents } from './pool.js';
import type { EndpointState, LoadBalancer, Random } from './types.js';
import { createLoadBalancer } from './lb/index.js';
import { isUsable } from './lb/healthy.js';
import { Http1Pool } from './http1-pool.js';
import { Http2Pool } from './http2-pool.js';
import { ejectedCount, newOutlierState, recordOutcome, tick, type CallOutcome, type EjectionReason, type OutlierState } from './outlier.js';
import { lastSuccessRate } from './outlier-interval.js';
import { HealthChecker, type HealthCheckHost } from './health-check.js';
import { failingCount, newHealthCheckState } from './health-check-state.js';
import { UpstreamTlsConnector, type HandshakeCounter } from '../tls/upstream-tls.js';
import type { TlsContexts } from '../tls/contexts.js';
import type { HandshakeFailureReporter } from '../tls/handshake-failures.js';
import type { OriginalDestination } from '../listener/original-dst.js';

/** What originating mTLS needs: the contexts over the SecretStore, and where refusals are counted. */
export interface UpstreamTlsDeps {
  readonly contexts: TlsContexts;
  readonly failures: HandshakeFailureReporter;
  /** Completed upstream handshakes, full or resumed. */
  readonly handshakes?: HandshakeCounter;
}

/** Per-cluster counters the cluster reports into (bound metric children; see observability/metrics). */
export interface ClusterStatsSink extends PoolEvents {
  connectFailure(): void;
  /** A request refused because the cluster had circuitBreakers.maxRequests requests in flight. */
  requestOverflow(): void;
  requestStarted(): void;
  /** One attempt ended with `status` after `seconds` (from the attempt's start to its end or its abandonment). */
  requestFinished(endpointKey: string, status: number, seconds: number): void;
  /** Outlier detection ejected an endpoint, for `reason`. */
  endpointEjected(reason: EjectionReason): void;
  /** Endpoints ejected now, after an ejection or un-ejection. */
  endpointsEjected(count: number): void;
  /** A failed attempt is being tried again. */
  retried(): void;
  /** A retry the policy called for was not made: attempts used up, the retry budget spent, or the body not held. */
  retrySkipped(why: RetrySkip): void;
  /** One active health-check probe finished. */
  healthCheck(success: boolean): void;
  /** Endpoints not passing active health checks now (pending or unhealthy). */
  endpointsUnhealthy(count: number): void;
}

export type RetrySkip = 'attempts' | 'budget' | 'body';

export type ClusterStatsFactory = (clusterName: string) => ClusterStatsSink;

/** What startCall returns when the cluster's request bulkhead is full (503 overflow, flag UO). */
export const CLUSTER_OVERFLOW = Symbol('pillion.clusterOverflow');

/** ORIGINAL_DST hosts (destinations) a cluster keeps at once; see startOriginalDstCall. */
export const ORIGINAL_DST_HOSTS_MAX = 1024;

/** Picks a retry makes to find an endpoint other than the one that failed. */
const HOST_SELECTION_ATTEMPTS = 3;

export function endpointKey(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function newEndpointState(model: EndpointModel): EndpointState {
  return {
    key: endpointKey(model.address, model.port),
    address: model.address,
    port: model.port,
    weight: model.weight,
    region: model.region,
    zone: model.zone,
    priority: model.priority ?? 0,
    localityWeight: model.localityWeight ?? 0,
    healthy: model.healthy,
    activeRequests: 0,
    totalRequests: 0,
    failedRequests: 0,
    outlier: newOutlierState(),
    healthCheck: null,
  };
}

export class UpstreamCluster implements HealthCheckHost {
  private endpointsByKey = new Map<string, EndpointState>();
  private readonly pools = new Map<string, ConnectionPool>();
  private readonly pending: PendingLimit;
  endpoints: readonly EndpointState[] = [];
  private lb: LoadBalancer;
  /** The outlier detection interval timer (unref'd); null when the cluster has no outlierDetection. */
  private outlierTimer: NodeJS.Timeout | null = null;
  private outlierIntervalMs = 0;
  private outliers: OutlierState[] = [];
  /** Active health checking; null when the cluster has no healthCheck. */
  private healthChecker: HealthChecker | null = null;
  /** Originates mTLS to the endpoints (the model's transport socket); null = plaintext. */
  tls: UpstreamTlsConnector | null = null;

  constructor(
    public model: ClusterModel,
    readonly stats: ClusterStatsSink,
    private readonly random: Random,
    private readonly now: () => number = Date.now,
    private readonly tlsDeps: UpstreamTlsDeps | null = null,
  ) {
    this.syncTls();
    this.pending = new PendingLimit(model.circuitBreakers.maxPendingRequests);
    this.lb = this.rebuild(model);
    this.syncOutlierTimer();
    this.syncHealthChecker();
  }

  /** Requests (HTTP requests and Upgrades) in flight to this cluster: Envoy's max_requests bulkhead counts these. */
  activeRequests = 0;

  /**
   * The one way to use an endpoint, for HTTP requests, Upgrades and TCP connections alike: checks the cluster's
   * request bulkhead (requests only: TCP connections are bounded by maxConnections), picks an endpoint and
   * counts the call on it. Every call that returns an endpoint is ended with endCall, exactly once.
   */
  startCall(hash: number | undefined, isRequest: boolean, avoid: EndpointState | null = null): EndpointState | null | typeof CLUSTER_OVERFLOW {
    if (isRequest && this.activeRequests >= this.model.circuitBreakers.maxRequests) {
      this.stats.requestOverflow();
      return CLUSTER_OVERFLOW;
    }
    let endpoint = this.lb.pick(hash);
    // A retry goes to another endpoint than the one that just failed, when a few picks find one (Envoy's
    // previous_hosts predicate with its default of a few host selection attempts).
    for (let i = 0; i < HOST_SELECTION_ATTEMPTS && endpoint !== null && endpoint === avoid; i++) endpoint = this.lb.pick(undefined);
    if (endpoint !== null && endpoint === avoid) endpoint = this.leastLoadedExcept(avoid) ?? endpoint;
    if (endpoint === null) return null;
    endpoint.activeRequests++;
    endpoint.totalRequests++;
    if (isRequest) this.activeRequests++;
    return endpoint;
  }

  /**
   * startCall for an HTTP request or Upgrade: on an ORIGINAL_DST cluster (PassthroughCluster) the host is where the
   * client's connection was going, `dst` (none: null, no_healthy_upstream); on any other the balancer picks.
   */
  startRequestCall(hash: number | undefined, dst: OriginalDestination | undefined, avoid: EndpointState | null = null): EndpointState | null | typeof CLUSTER_OVERFLOW {
    if (this.model.originalDst !== true) return this.startCall(hash, true, avoid);
    return dst === undefined ? null : this.startOriginalDstCall(dst.address, dst.port, true);
  }

  /** ORIGINAL_DST: a host per original destination, made on first use (Envoy's original_dst cluster). */
  private readonly originalDstHosts = new Map<string, EndpointState>();

  /**
   * startCall for an ORIGINAL_DST cluster: the host is the connection's original destination. Hosts are kept
   * for their connection pools; past ORIGINAL_DST_HOSTS_MAX the idle ones are dropped with their pools (Envoy
   * cleans unused hosts every cleanup_interval, 5 s); when none is idle the call gets null (no_healthy_upstream).
   */
  startOriginalDstCall(address: string, port: number, isRequest: boolean): EndpointState | null | typeof CLUSTER_OVERFLOW {
    if (isRequest && this.activeRequests >= this.model.circuitBreakers.maxRequests) {
      this.stats.requestOverflow();
      return CLUSTER_OVERFLOW;
    }
    const key = endpointKey(address, port);
    let endpoint = this.originalDstHosts.get(key);
    if (endpoint === undefined) {
      if (this.originalDstHosts.size >= ORIGINAL_DST_HOSTS_MAX && !this.dropIdleOriginalDstHosts()) return null;
      endpoint = newEndpointState({ address, port, weight: 1, healthy: true, region: '', zone: '' });
      this.originalDstHosts.set(key, endpoint);
    }
    endpoint.activeRequests++;
    endpoint.totalRequests++;
    if (isRequest) this.activeRequests++;
    return endpoint;
  }

  /** Drops the ORIGINAL_DST hosts with nothing in flight, and their pools; false when every host is busy. */
  private dropIdleOriginalDstHosts(): boolean {
    const before = this.originalDstHosts.size;
    for (const [key, e] of this.originalDstHosts) {
      if (e.activeRequests > 0) continue;
      this.originalDstHosts.delete(key);
      const pool = this.pools.get(key);
      this.pools.delete(key);
      pool?.drain();
    }
    return this.originalDstHosts.size < before;
  }

  /**
   * The usable endpoint other than `avoid` with the fewest requests in flight, or null when there is none: a retry's
   * last resort when the balancer keeps picking the endpoint that just failed (least_request favours an endpoint
   * that fails fast). A scan, but only on that rare path.
   */
  private leastLoadedExcept(avoid: EndpointState): EndpointState | null {
    let best: EndpointState | null = null;
    for (const e of this.endpoints) {
      if (e === avoid || !isUsable(e)) continue;
      if (best === null || e.activeRequests < best.activeRequests) best = e;
    }
    return best;
  }

  /** Retries in flight (from the decision to retry until the request ends), for the retry budget. */
  activeRetries = 0;

  /**
   * Takes a retry slot if the cluster's limit allows: the retry budget (a percent of the active and pending
   * requests, never below its floor) when set, else the max_retries circuit breaker. Released with retryEnded.
   */
  tryStartRetry(): boolean {
    const cb = this.model.circuitBreakers;
    const budget = cb.retryBudget;
    const limit =
      budget === undefined
        ? cb.maxRetries
        : Math.max(budget.minRetryConcurrency, Math.floor((budget.budgetPercent / 100) * (this.activeRequests + this.pending.count)));
    if (this.activeRetries >= limit) return false;
    this.activeRetries++;
    return true;
  }

  retryEnded(): void {
    this.activeRetries--;
  }

  /** Ends a call startCall began; `outcome` feeds outlier detection when the cluster has it. */
  endCall(endpoint: EndpointState, isRequest: boolean, outcome: CallOutcome): void {
    endpoint.activeRequests--;
    if (outcome !== 'success' && outcome !== 'ignored') endpoint.failedRequests++;
    if (isRequest) this.activeRequests--;
    this.recordOutcome(endpoint, outcome);
  }

  /**
   * Feeds outlier detection one outcome of a call still in flight (a hedged try past its per-try timeout: Envoy
   * counts the timeout then, though the try may still answer); endCall does it for the call's end.
   */
  recordOutcome(endpoint: EndpointState, outcome: CallOutcome): void {
    const od = this.model.outlierDetection;
    // An endpoint removed by a config update while the call was in flight is no longer the detector's concern.
    if (od === undefined || this.endpointsByKey.get(endpoint.key) !== endpoint) return;
    if (recordOutcome(od, endpoint.outlier, this.outlierStates(), outcome, this.now(), this.random)) {
      this.stats.endpointEjected(endpoint.outlier.ejectionReason!);
      this.membershipChanged();
    }
  }

  /** The interval tick: un-ejects endpoints whose ejection time is up and runs the interval detectors. */
  outlierTick(): void {
    const od = this.model.outlierDetection;
    if (od === undefined) return;
    const { unejected, ejected } = tick(od, this.outlierStates(), this.now(), this.random);
    for (const s of ejected) this.stats.endpointEjected(s.ejectionReason!);
    if (unejected > 0 || ejected.length > 0) this.membershipChanged();
  }

  /** The outlier state of every endpoint, in endpoint order; rebuilt with the endpoint list, not per call. */
  private outlierStates(): readonly OutlierState[] {
    return this.outliers;
  }

  private membershipChanged(): void {
    this.stats.endpointsEjected(ejectedCount(this.outlierStates()));
    this.stats.endpointsUnhealthy(failingCount(this.endpoints.map((e) => e.healthCheck)));
    this.lb = createLoadBalancer(this.model, this.endpoints, this.random);
  }

  healthChanged(): void {
    this.membershipChanged();
  }

  probed(success: boolean): void {
    this.stats.healthCheck(success);
  }

  hadTraffic(): boolean {
    for (const e of this.endpoints) if (e.totalRequests > 0) return true;
    return false;
  }

  /** Starts, follows or stops active health checking with the model and the endpoint list. */
  private syncHealthChecker(): void {
    const hc = this.model.healthCheck;
    if (hc === undefined) return this.stopHealthChecker();
    this.healthChecker ??= new HealthChecker(hc, this);
    this.healthChecker.sync(hc, this.endpoints);
  }

  private stopHealthChecker(): void {
    this.healthChecker?.stop();
    this.healthChecker = null;
  }

  /** One unref'd timer while the cluster has outlierDetection, restarted when its interval changes. */
  private syncOutlierTimer(): void {
    const intervalMs = this.model.outlierDetection?.intervalMs ?? 0;
    if (intervalMs === this.outlierIntervalMs) return;
    this.stopOutlierTimer();
    if (intervalMs === 0) return;
    this.outlierIntervalMs = intervalMs;
    this.outlierTimer = setInterval(() => this.outlierTick(), intervalMs);
    this.outlierTimer.unref();
  }

  private stopOutlierTimer(): void {
    if (this.outlierTimer !== null) clearInterval(this.outlierTimer);
    this.outlierTimer = null;
    this.outlierIntervalMs = 0;
  }

  /** The connection pool for an endpoint, created on first use. */
  pool(endpoint: EndpointState): ConnectionPool {
    let pool = this.pools.get(endpoint.key);
    if (pool === undefined) {
      const origin = `${this.tls === null ? 'http' : 'https'}://${endpoint.key}`;
      const { circuitBreakers, connectTimeoutMs, maxIdleConnectionsPerEndpoint } = this.model;
      const options = {
        tls: this.tls,
        connectTimeoutMs,
        maxConnections: circuitBreakers.maxConnections,
        maxIdle: maxIdleConnectionsPerEndpoint,
        events: this.stats,
        pending: this.pending,
      };
      pool = this.model.protocol === 'http2' ? new Http2Pool(origin, options) : new Http1Pool(endpoint.address, endpoint.port, options);
      this.pools.set(endpoint.key, pool);
    }
    return pool;
  }

  /** Applies a new version of this cluster's config; endpoints that remain keep their state. */
  update(model: ClusterModel): void {
    const poolShapeChanged =
      model.protocol !== this.model.protocol ||
      model.connectTimeoutMs !== this.model.connectTimeoutMs ||
      model.circuitBreakers.maxConnections !== this.model.circuitBreakers.maxConnections ||
      model.maxIdleConnectionsPerEndpoint !== this.model.maxIdleConnectionsPerEndpoint ||
      JSON.stringify(model.tls) !== JSON.stringify(this.model.tls);
    this.model = model;
    if (poolShapeChanged) this.syncTls();
    this.pending.max = model.circuitBreakers.maxPendingRequests;
    if (poolShapeChanged) this.drainPools(() => true);
    this.lb = this.rebuild(model);
    this.syncOutlierTimer();
    this.syncHealthChecker();
  }

  /**
   * A transport socket added, changed or removed: idle connections of the old shape are closed with the pools
   * (update drains them), and new ones follow the new model. Never a plaintext connection to a TLS cluster.
   */
  private syncTls(): void {
    const model = this.model.tls;
    if (model === undefined) {
      this.tls = null;
      return;
    }
    if (this.tlsDeps === null) throw new Error(`cluster ${this.model.name}: has a TLS transport socket but the cluster manager has no TLS contexts`);
    this.tls = new UpstreamTlsConnector(model, this.tlsDeps.contexts, this.tlsDeps.failures, this.model.name, this.tlsDeps.handshakes ?? null);
  }

  close(): void {
    this.stopOutlierTimer();
    this.stopHealthChecker();
    this.drainPools(() => true);
  }

  destroy(): void {
    this.stopOutlierTimer();
    this.stopHealthChecker();
    for (const pool of this.pools.values()) pool.destroy();
    this.pools.clear();
  }

  status(): ClusterStatus {
    return {
      name: this.model.name,
      lbPolicy: this.model.lbPolicy,
      protocol: this.model.protocol,
      endpoints: this.endpoints.map((ep) => ({
        address: ep.address,
        port: ep.port,
        weight: ep.weight,
        zone: ep.zone,
        region: ep.region,
        priority: ep.priority,
        localityWeight: ep.localityWeight,
        healthy: ep.healthy,
        activeRequests: ep.activeRequests,
        activeConnections: this.pools.get(ep.key)?.connections ?? 0,
        totalRequests: ep.totalRequests,
        failedRequests: ep.failedRequests,
        ejectedUntil: ep.outlier.ejectedUntilMs === null ? null : new Date(ep.outlier.ejectedUntilMs).toISOString(),
        timesEjected: ep.outlier.timesEjected,
        ejectionReason: ep.outlier.ejectionReason,
        successRate: lastSuccessRate(ep.outlier),
        healthCheck: ep.healthCheck === null ? null : ep.healthCheck.status,
      })),
    };
  }

  private rebuild(model: ClusterModel): LoadBalancer {
    const next = new Map<string, EndpointState>();
    for (const em of model.endpoints) {
      const key = endpointKey(em.address, em.port);
      const state = this.endpointsByKey.get(key) ?? next.get(key) ?? newEndpointState(em);
      state.weight = Math.max(1, em.weight);
      state.region = em.region;
      state.zone = em.zone;
      state.priority = em.priority ?? 0;
      state.localityWeight = em.localityWeight ?? 0;
      state.healthy = em.healthy;
      next.set(key, state);
    }
    this.endpointsByKey = next;
    this.drainPools((key) => !next.has(key));
    this.endpoints = [...next.values()];
    if (model.outlierDetection === undefined) {
      // Detection removed: nothing stays ejected (Envoy drops the detector with its state).
      for (const e of this.endpoints) e.outlier = newOutlierState();
    }
    this.outliers = this.endpoints.map((e) => e.outlier);
    this.stats.endpointsEjected(ejectedCount(this.outlierStates()));
    // Health checks added: every endpoint starts pending, as Envoy adds hosts failed-active-HC until a probe passes.
    for (const e of this.endpoints) {
      if (model.healthCheck === undefined) e.healthCheck = null;
      else e.healthCheck ??= newHealthCheckState();
    }
    this.stats.endpointsUnhealthy(failingCount(this.endpoints.map((e) => e.healthCheck)));
    return createLoadBalancer(model, this.endpoints, this.random);
  }

  private drainPools(which: (key: string) => boolean): void {
    for (const [key, pool] of this.pools) {
      if (!which(key)) continue;
      pool.drain();
      this.pools.delete(key);
    }
  }
}

export class ClusterManager {
  private clusters = new Map<string, UpstreamCluster>();

  constructor(
    private readonly statsFor: ClusterStatsFactory,
    private readonly random: Random = Math.random,
    private readonly tls: UpstreamTlsDeps | null = null,
  ) {}

  get(name: string): UpstreamCluster | undefined {
    return this.clusters.get(name);
  }

  has(name: string): boolean {
    return this.clusters.has(name);
  }

  update(models: ReadonlyMap<string, ClusterModel>): void {
    const next = new Map<string, UpstreamCluster>();
    for (const [name, model] of models) {
      const existing = this.clusters.get(name);
      if (existing !== undefined) {
        if (existing.model !== model) existing.update(model);
        next.set(name, existing);
      } else {
        next.set(name, new UpstreamCluster(model, this.statsFor(name), this.random, Date.now, this.tls));
      }
    }
    // Removed clusters: requests in flight hold their cluster and finish; idle connections close now.
    for (const [name, cluster] of this.clusters) if (!next.has(name)) cluster.close();
    this.clusters = next;
  }

  status(): ClusterStatus[] {
    return [...this.clusters.values()].map((c) => c.status());
  }

  destroy(): void {
    for (const cluster of this.clusters.values()) cluster.destroy();
    this.clusters.clear();
  }
}
