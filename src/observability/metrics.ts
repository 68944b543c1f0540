// Every metric the proxy exports, declared in one place with help text, plus cached label children for the hot path.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Direction } from '../config/model.js';
import type { Reason } from '../reasons.js';

type CounterChild = Counter.Internal;
type GaugeChild = Gauge.Internal<string>;
type HistogramChild = Histogram.Internal<string>;

/** Status → code class by index (status / 100), so no string is built per call; out-of-range → "other". */
const CODE_CLASSES = ['other', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export type CodeClass = (typeof CODE_CLASSES)[number];

export function codeClassIndex(status: number): number {
  const i = (status / 100) | 0;
  return i >= 1 && i <= 5 ? i : 0;
}

export function codeClass(status: number): CodeClass {
  return CODE_CLASSES[codeClassIndex(status)]!;
}

/** 0.5 ms to 30 s, roughly ×2–2.5 per step: sub-millisecond sidecar hops and slow upstreams both resolve. */
export const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

const DIRECTIONS: readonly Direction[] = ['inbound', 'outbound'];
const dirIndex = (d: Direction): number => (d === 'inbound' ? 0 : 1);

/** Per-listener children, bound once per listener name. */
export interface ListenerStats {
  readonly connections: CounterChild;
  readonly connectionsActive: GaugeChild;
  readonly bytesReceived: CounterChild;
  readonly bytesSent: CounterChild;
}

/** Per-cluster children, bound once per cluster name; hold it beside the cluster and use it per request. */
export class ClusterStats {
  readonly requestsActive: GaugeChild;
  readonly connectFailures: CounterChild;
  readonly connectionsActive: GaugeChild;
  readonly tcpConnections: CounterChild;
  /** endpointKey → six children indexed by codeClassIndex (filled lazily). */
  private readonly byEndpoint = new Map<string, (CounterChild | undefined)[]>();

  constructor(
    private readonly metrics: ProxyMetrics,
    readonly cluster: string,
  ) {
    this.requestsActive = metrics.upstreamRequestsActive.labels(cluster);
    this.connectFailures = metrics.upstreamConnectFailures.labels(cluster);
    this.connectionsActive = metrics.upstreamConnectionsActive.labels(cluster);
    this.tcpConnections = metrics.tcpConnections.labels(cluster);
  }

  /** Counts one finished upstream request (one attempt) to `endpointKey` with `status`. */
  upstreamRequest(endpointKey: string, status: number): void {
    let row = this.byEndpoint.get(endpointKey);
    if (row === undefined) {
      row = new Array<CounterChild | undefined>(CODE_CLASSES.length);
      this.byEndpoint.set(endpointKey, row);
    }
    const i = codeClassIndex(status);
    let child = row[i];
    if (child === undefined) {
      child = this.metrics.upstreamRequests.labels(this.cluster, endpointKey, CODE_CLASSES[i]!);
      row[i] = child;
    }
    child.inc();
  }

  /** Drops the series of one endpoint that left the cluster (labels stay bounded by live endpoints). */
  forgetEndpoint(endpointKey: string): void {
    const row = this.byEndpoint.get(endpointKey);
    if (row === undefined) return;
    for (let i = 0; i < row.length; i++) {
      if (row[i] !== undefined) this.metrics.upstreamRequests.remove(this.cluster, endpointKey, CODE_CLASSES[i]!);
    }
    this.byEndpoint.delete(endpointKey);
  }

  /** Removes every series of this cluster (called when the cluster is removed from config). */
  forgetAll(): void {
    for (const key of [...this.byEndpoint.keys()]) this.forgetEndpoint(key);
    this.metrics.upstreamRequestsActive.remove(this.cluster);
    this.metrics.upstreamConnectFailures.remove(this.cluster);
    this.metrics.upstreamConnectionsActive.remove(this.cluster);
    this.metrics.tcpConnections.remove(this.cluster);
  }
}

export interface ProxyMetricsOptions {
  /** Node process/runtime metrics (process_*, nodejs_*); off in tests that compare exact output. */
  readonly defaultMetrics?: boolean;
}

/** The proxy's metric registry (its own, never prom-client's global one) and every metric in it. */
export class ProxyMetrics {
  readonly registry = new Registry();

  readonly downstreamRequestsTotal: Counter<'direction' | 'code_class'>;
  readonly downstreamRequestDuration: Histogram<'direction'>;
  readonly downstreamRequestsActive: Gauge<'direction'>;
  readonly downstreamConnections: Counter<'listener'>;
  readonly downstreamConnectionsActive: Gauge<'listener'>;
  readonly downstreamBytesReceived: Counter<'listener'>;
  readonly downstreamBytesSent: Counter<'listener'>;
  readonly upstreamRequests: Counter<'cluster' | 'endpoint' | 'code_class'>;
  readonly upstreamRequestsActive: Gauge<'cluster'>;
  readonly upstreamConnectFailures: Counter<'cluster'>;
  readonly upstreamConnectionsActive: Gauge<'cluster'>;
  readonly localReplies: Counter<'reason'>;
  readonly tcpConnections: Counter<'cluster'>;
  readonly configVersionInfo: Gauge<'version'>;
  readonly configUpdates: Counter<'result'>;

  /** [direction * 6 + codeClassIndex] */
  private readonly downstreamChildren: CounterChild[] = [];
  private readonly durationChildren: HistogramChild[];
  private readonly activeChildren: GaugeChild[];
  private readonly listeners = new Map<string, ListenerStats>();
  private readonly clusters = new Map<string, ClusterStats>();
  private readonly reasons = new Map<string, CounterChild>();
  private configVersion: string | undefined;

  constructor(opts: ProxyMetricsOptions = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });

    this.downstreamRequestsTotal = new Counter({
      name: 'pillion_downstream_requests_total',
      help: 'HTTP requests received from downstream, by direction and response code class.',
      labelNames: ['direction', 'code_class'] as const,
      registers,
    });
    this.downstreamRequestDuration = new Histogram({
      name: 'pillion_downstream_request_duration_seconds',
      help: 'Time from the first byte of a downstream request to the end of its response, in seconds.',
      labelNames: ['direction'] as const,
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.downstreamRequestsActive = new Gauge({
      name: 'pillion_downstream_requests_active',
      help: 'HTTP requests from downstream in progress.',
      labelNames: ['direction'] as const,
      registers,
    });
    this.downstreamConnections = new Counter({
      name: 'pillion_downstream_connections_total',
      help: 'Connections accepted by each listener.',
      labelNames: ['listener'] as const,
      registers,
    });
    this.downstreamConnectionsActive = new Gauge({
      name: 'pillion_downstream_connections_active',
      help: 'Open downstream connections per listener.',
      labelNames: ['listener'] as const,
      registers,
    });
    this.downstreamBytesReceived = new Counter({
      name: 'pillion_downstream_bytes_received_total',
      help: 'Bytes received from downstream per listener.',
      labelNames: ['listener'] as const,
      registers,
    });
    this.downstreamBytesSent = new Counter({
      name: 'pillion_downstream_bytes_sent_total',
      help: 'Bytes sent to downstream per listener.',
      labelNames: ['listener'] as const,
      registers,
    });
    this.upstreamRequests = new Counter({
      name: 'pillion_upstream_requests_total',
      help: 'Upstream request attempts by cluster, endpoint and response code class.',
      labelNames: ['cluster', 'endpoint', 'code_class'] as const,
      registers,
    });
    this.upstreamRequestsActive = new Gauge({
      name: 'pillion_upstream_requests_active',
      help: 'Upstream requests in progress per cluster.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamConnectFailures = new Counter({
      name: 'pillion_upstream_connect_failures_total',
      help: 'Failed upstream connection attempts (refused, timed out, TLS failure) per cluster.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamConnectionsActive = new Gauge({
      name: 'pillion_upstream_connections_active',
      help: 'Open upstream connections per cluster.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.localReplies = new Counter({
      name: 'pillion_local_replies_total',
      help: 'Responses the proxy made itself, by reason (the x-pillion-reason value).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.tcpConnections = new Counter({
      name: 'pillion_tcp_connections_total',
      help: 'Proxied TCP connections per upstream cluster.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.configVersionInfo = new Gauge({
      name: 'pillion_config_version_info',
      help: 'The config version in use (value 1 on the current version).',
      labelNames: ['version'] as const,
      registers,
    });
    this.configUpdates = new Counter({
      name: 'pillion_config_updates_total',
      help: 'Config updates received, by result (applied or rejected).',
      labelNames: ['result'] as const,
      registers,
    });

    for (const d of DIRECTIONS) for (const c of CODE_CLASSES) this.downstreamChildren.push(this.downstreamRequestsTotal.labels(d, c));
    this.durationChildren = DIRECTIONS.map((d) => this.downstreamRequestDuration.labels(d));
    this.activeChildren = DIRECTIONS.map((d) => this.downstreamRequestsActive.labels(d));
  }

  /** Counts one finished downstream request. */
  downstreamRequests(direction: Direction, status: number): void {
    this.downstreamChildren[dirIndex(direction) * CODE_CLASSES.length + codeClassIndex(status)]!.inc();
  }

  observeDownstreamDuration(direction: Direction, seconds: number): void {
    this.durationChildren[dirIndex(direction)]!.observe(seconds);
  }

  /** The pre-bound active-requests gauge of a direction: inc() at request start, dec() at its end. */
  downstreamActive(direction: Direction): GaugeChild {
    return this.activeChildren[dirIndex(direction)]!;
  }

  listenerStats(listener: string): ListenerStats {
    let s = this.listeners.get(listener);
    if (s === undefined) {
      s = {
        connections: this.downstreamConnections.labels(listener),
        connectionsActive: this.downstreamConnectionsActive.labels(listener),
        bytesReceived: this.downstreamBytesReceived.labels(listener),
        bytesSent: this.downstreamBytesSent.labels(listener),
      };
      this.listeners.set(listener, s);
    }
    return s;
  }

  clusterStats(cluster: string): ClusterStats {
    let s = this.clusters.get(cluster);
    if (s === undefined) {
      s = new ClusterStats(this, cluster);
      this.clusters.set(cluster, s);
    }
    return s;
  }

  /** Drops a removed cluster's series so label values stay bounded by the live config. */
  forgetCluster(cluster: string): void {
    const s = this.clusters.get(cluster);
    if (s === undefined) return;
    s.forgetAll();
    this.clusters.delete(cluster);
  }

  localReply(reason: Reason): void {
    let c = this.reasons.get(reason.id);
    if (c === undefined) {
      c = this.localReplies.labels(reason.id);
      this.reasons.set(reason.id, c);
    }
    c.inc();
  }

  /** Marks `version` as current: its series is 1 and the previous version's series is removed. */
  setConfigVersion(version: string): void {
    if (version === this.configVersion) return;
    this.configVersionInfo.reset();
    this.configVersionInfo.labels(version).set(1);
    this.configVersion = version;
  }

  configUpdate(result: 'applied' | 'rejected'): void {
    this.configUpdates.labels(result).inc();
  }
}
