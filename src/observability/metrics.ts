// Every metric the proxy exports, declared in one place with help text, with per-series cells for the hot path.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { Direction } from '../config/model.js';
import type { Reason } from '../reasons.js';
import type { RetrySkip } from '../upstream/cluster-manager.js';
import type { EjectionReason } from '../upstream/outlier.js';
import { processLogDropped } from './logger.js';
import { rawBodyStats } from '../upstream/raw-body-stats.js';

// Why cells: prom-client's bound children still hash their label object on every inc() (~0.5 µs each). A cell
// is a plain number the hot path adds to; its family pushes the values into prom-client when the registry is
// collected (a scrape), so per-request cost is one field write.

/** One counter series. */
export class CounterCell {
  value = 0;
  /** Value already pushed into prom-client. */
  flushed = 0;
  constructor(readonly labels: Record<string, string>) {}
  inc(n = 1): void {
    this.value += n;
  }
}

/** One gauge series. */
export class GaugeCell {
  value = 0;
  constructor(readonly labels: Record<string, string>) {}
  inc(n = 1): void {
    this.value += n;
  }
  dec(n = 1): void {
    this.value -= n;
  }
  set(v: number): void {
    this.value = v;
  }
}

/** What Registry reads from a metric's get() (prom-client's typings say an enum; the runtime uses strings). */
export interface CollectedMetric {
  name: string;
  help: string;
  type: 'histogram';
  aggregator: 'sum';
  values: { metricName: string; labels: Record<string, string>; value: number }[];
}

/** One histogram series: per-bucket counts (not cumulative; cumulated at scrape), sum and count. */
export class HistogramCell {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Record<string, string>,
    private readonly bounds: Float64Array,
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(v: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && v > b[i]!) i++;
    this.counts[i]!++;
    this.sum += v;
    this.count++;
  }
}

/**
 * A histogram registered straight into the Registry (it accepts any object with `name` and `get()`), because
 * prom-client's own Histogram hashes labels on every observe. The registry formats it like a native one.
 */
export class HistogramFamily<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  private readonly bounds: Float64Array;
  private readonly leLabels: string[];
  private readonly cells = new Map<string, HistogramCell>();

  constructor(config: FamilyConfig<L> & { readonly buckets: readonly number[] }) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames;
    this.bounds = Float64Array.from([...config.buckets].sort((a, b) => a - b));
    this.leLabels = [...this.bounds].map(String);
    this.leLabels.push('+Inf');
    for (const r of config.registers) r.registerMetric(this as never);
  }

  readonly labelNames: readonly L[];

  cell(...values: string[]): HistogramCell {
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    let c = this.cells.get(key);
    if (c === undefined) {
      const labels: Record<string, string> = {};
      for (let i = 0; i < this.labelNames.length; i++) labels[this.labelNames[i]!] = values[i] ?? '';
      c = new HistogramCell(labels, this.bounds);
      this.cells.set(key, c);
    }
    return c;
  }

  /** Drops a series (its cluster went away), so labels stay bounded by live config. */
  remove(...values: string[]): void {
    this.cells.delete(values.length === 1 ? values[0]! : values.join('\u0000'));
  }

  reset(): void {
    for (const c of this.cells.values()) {
      c.counts.fill(0);
      c.sum = 0;
      c.count = 0;
    }
  }

  get(): Promise<CollectedMetric> {
    const values: CollectedMetric['values'] = [];
    for (const c of this.cells.values()) {
      let acc = 0;
      for (let i = 0; i < this.leLabels.length; i++) {
        acc += c.counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...c.labels, le: this.leLabels[i]! }, value: acc });
      }
      values.push({ metricName: `${this.name}_sum`, labels: c.labels, value: c.sum });
      values.push({ metricName: `${this.name}_count`, labels: c.labels, value: c.count });
    }
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }
}

interface FamilyConfig<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly L[];
  readonly registers: Registry[];
}

/** Cells of one labelled metric, keyed by label values; built once per series, never per request. */
abstract class CellFamily<L extends string, C extends CounterCell | GaugeCell> {
  protected readonly cells = new Map<string, C>();
  constructor(readonly labelNames: readonly L[]) {}

  protected abstract create(labels: Record<string, string>): C;
  protected abstract dropSeries(labels: Record<string, string>): void;

  cell(...values: string[]): C {
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    let c = this.cells.get(key);
    if (c === undefined) {
      const labels: Record<string, string> = {};
      for (let i = 0; i < this.labelNames.length; i++) labels[this.labelNames[i]!] = values[i] ?? '';
      c = this.create(labels);
      this.cells.set(key, c);
    }
    return c;
  }

  remove(...values: string[]): void {
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    const c = this.cells.get(key);
    if (c === undefined) return;
    this.cells.delete(key);
    this.dropSeries(c.labels);
  }
}

export class CounterFamily<L extends string> extends CellFamily<L, CounterCell> {
  readonly metric: Counter<L>;
  /** Runs when the metric is read, before its cells are flushed: brings counts taken lazily up to date. */
  beforeCollect: (() => void) | null = null;
  constructor(config: FamilyConfig<L>) {
    super(config.labelNames);
    this.metric = new Counter<L>({
      ...config,
      labelNames: [...config.labelNames],
      collect: () => {
        this.beforeCollect?.();
        this.flush();
      },
    });
  }
  protected create(labels: Record<string, string>): CounterCell {
    // Materialise the series at 0 so it is scraped before its first event (Prometheus practice).
    this.metric.inc(labels as Partial<Record<L, string>>, 0);
    return new CounterCell(labels);
  }
  protected dropSeries(labels: Record<string, string>): void {
    this.metric.remove(labels as Partial<Record<L, string>>);
  }
  private flush(): void {
    for (const c of this.cells.values()) {
      const delta = c.value - c.flushed;
      if (delta > 0) {
        this.metric.inc(c.labels as Partial<Record<L, string>>, delta);
        c.flushed = c.value;
      }
    }
  }
}

export class GaugeFamily<L extends string> extends CellFamily<L, GaugeCell> {
  readonly metric: Gauge<L>;
  constructor(config: FamilyConfig<L>) {
    super(config.labelNames);
    this.metric = new Gauge<L>({ ...config, labelNames: [...config.labelNames], collect: () => this.flush() });
  }
  protected create(labels: Record<string, string>): GaugeCell {
    this.metric.set(labels as Partial<Record<L, string>>, 0);
    return new GaugeCell(labels);
  }
  protected dropSeries(labels: Record<string, string>): void {
    this.metric.remove(labels as Partial<Record<L, string>>);
  }
  private flush(): void {
    for (const c of this.cells.values()) this.metric.set(c.labels as Partial<Record<L, string>>, c.value);
  }
}

/** Distinct caller identities kept as label values: a mesh has far fewer; a flood of identities cannot grow series. */
export const MAX_PEER_LABELS = 1000;

const CODE_CLASSES = ['other', '1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export type CodeClass = (typeof CODE_CLASSES)[number];

/** Status → code class by index (status / 100), so no string is built per call; out of range (e.g. 0 when no
 * response arrived) → "other". */
export function codeClassIndex(status: number): number {
  const i = (status / 100) | 0;
  return i >= 1 && i <= 5 ? i : 0;
}

export function codeClass(status: number): CodeClass {
  return CODE_CLASSES[codeClassIndex(status)]!;
}

/**
 * The `response_code` label values, by codeIndex: "other" at 0, then "100" … "599" (Istio's response_code,
 * Envoy's upstream_rq_<code>). Built once, so a request indexes an array instead of building a string; the
 * bound (501 values) keeps the label's cardinality fixed whatever an upstream answers.
 */
const RESPONSE_CODES: readonly string[] = ['other', ...Array.from({ length: 500 }, (_, i) => String(100 + i))];
/** codeIndex → codeClassIndex, so the class of a code is a lookup too. */
const CLASS_OF_CODE: Uint8Array = Uint8Array.from(RESPONSE_CODES, (_, i) => (i === 0 ? 0 : codeClassIndex(99 + i)));

/** Status → index into RESPONSE_CODES: 1…500 for 100–599, 0 ("other") for anything else (0: no response). */
export function codeIndex(status: number): number {
  return status >= 100 && status < 600 ? (status - 99) | 0 : 0;
}

export function responseCode(status: number): string {
  return RESPONSE_CODES[codeIndex(status)]!;
}

/** 0.5 ms to 30 s, roughly ×2–2.5 per step: sub-millisecond sidecar hops and slow upstreams both resolve. */
export const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

const DIRECTIONS: readonly Direction[] = ['inbound', 'outbound'];
const dirIndex = (d: Direction): number => (d === 'inbound' ? 0 : 1);

/** Per-listener children, bound once per listener name. */
export interface ListenerStats {
  readonly connections: CounterCell;
  readonly connectionsActive: GaugeCell;
  readonly bytesReceived: CounterCell;
  readonly bytesSent: CounterCell;
}

/** Per-cluster children, bound once per cluster name; hold it beside the cluster and use it per request. */
export class ClusterStats {
  readonly requestsActive: GaugeCell;
  readonly connectFailures: CounterCell;
  readonly connectionsActive: GaugeCell;
  readonly tcpConnections: CounterCell;
  readonly resetBudgetExhausted: CounterCell;
  readonly pendingOverflow: CounterCell;
  readonly requestOverflow: CounterCell;
  /** Bound lazily per reason: most clusters never eject. */
  private readonly ejections = new Map<EjectionReason, CounterCell>();
  readonly retries: CounterCell;
  /** Upstream request time per attempt (Envoy's upstream_rq_time). */
  readonly requestTime: HistogramCell;
  /** Bound lazily: most clusters never skip a retry. */
  private readonly skipped = new Map<RetrySkip, CounterCell>();
  readonly endpointsEjected: GaugeCell;
  readonly healthChecksSuccess: CounterCell;
  readonly healthChecksFailure: CounterCell;
  readonly endpointsUnhealthy: GaugeCell;
  /**
   * endpointKey → children indexed by the proxy's response-code slot (ProxyMetrics.codeSlot), filled lazily: a
   * row grows only to the codes this proxy has seen, not to all 501.
   */
  private readonly byEndpoint = new Map<string, (CounterCell | undefined)[]>();

  constructor(
    private readonly metrics: ProxyMetrics,
    readonly cluster: string,
  ) {
    this.requestsActive = metrics.upstreamRequestsActive.cell(cluster);
    this.connectFailures = metrics.upstreamConnectFailures.cell(cluster);
    this.connectionsActive = metrics.upstreamConnectionsActive.cell(cluster);
    this.tcpConnections = metrics.tcpConnections.cell(cluster);
    this.resetBudgetExhausted = metrics.upstreamResetBudgetExhausted.cell(cluster);
    this.pendingOverflow = metrics.upstreamPendingOverflow.cell(cluster);
    this.requestOverflow = metrics.upstreamRequestOverflow.cell(cluster);
    this.retries = metrics.upstreamRetries.cell(cluster);
    this.requestTime = metrics.upstreamRequestDuration.cell(cluster);
    this.endpointsEjected = metrics.upstreamEndpointsEjected.cell(cluster);
    this.healthChecksSuccess = metrics.upstreamHealthChecks.cell(cluster, 'success');
    this.healthChecksFailure = metrics.upstreamHealthChecks.cell(cluster, 'failure');
    this.endpointsUnhealthy = metrics.upstreamEndpointsUnhealthy.cell(cluster);
  }

  retrySkipped(why: RetrySkip): void {
    let cell = this.skipped.get(why);
    if (cell === undefined) {
      cell = this.metrics.upstreamRetriesSkipped.cell(this.cluster, why);
      this.skipped.set(why, cell);
    }
    cell.inc();
  }

  ejected(reason: EjectionReason): void {
    let cell = this.ejections.get(reason);
    if (cell === undefined) {
      cell = this.metrics.upstreamEjections.cell(this.cluster, reason);
      this.ejections.set(reason, cell);
    }
    cell.inc();
  }

  /** Counts one finished upstream request (one attempt) to `endpointKey` with `status`. */
  upstreamRequest(endpointKey: string, status: number): void {
    let row = this.byEndpoint.get(endpointKey);
    if (row === undefined) {
      row = [];
      this.byEndpoint.set(endpointKey, row);
    }
    const code = codeIndex(status);
    const slot = this.metrics.codeSlot(code);
    let child = row[slot];
    if (child === undefined) {
      child = this.metrics.upstreamRequests.cell(this.cluster, endpointKey, CODE_CLASSES[CLASS_OF_CODE[code]!]!, RESPONSE_CODES[code]!);
      while (row.length < slot) row.push(undefined);
      row[slot] = child;
    }
    child.inc();
  }

  /** Drops the series of one endpoint that left the cluster (labels stay bounded by live endpoints). */
  forgetEndpoint(endpointKey: string): void {
    const row = this.byEndpoint.get(endpointKey);
    if (row === undefined) return;
    for (const child of row) {
      if (child !== undefined) this.metrics.upstreamRequests.remove(this.cluster, endpointKey, child.labels.code_class!, child.labels.response_code!);
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
    this.metrics.upstreamResetBudgetExhausted.remove(this.cluster);
    this.metrics.upstreamPendingOverflow.remove(this.cluster);
    this.metrics.upstreamRequestOverflow.remove(this.cluster);
    for (const reason of this.ejections.keys()) this.metrics.upstreamEjections.remove(this.cluster, reason);
    this.metrics.upstreamRetries.remove(this.cluster);
    this.metrics.upstreamRequestDuration.remove(this.cluster);
    for (const why of this.skipped.keys()) this.metrics.upstreamRetriesSkipped.remove(this.cluster, why);
    this.metrics.upstreamEndpointsEjected.remove(this.cluster);
    this.metrics.upstreamHealthChecks.remove(this.cluster, 'success');
    this.metrics.upstreamHealthChecks.remove(this.cluster, 'failure');
    this.metrics.upstreamEndpointsUnhealthy.remove(this.cluster);
  }
}

export interface ProxyMetricsOptions {
  /** Node process/runtime metrics (process_*, nodejs_*); off in tests that compare exact output. */
  readonly defaultMetrics?: boolean;
}

/** The proxy's metric registry (its own, never prom-client's global one) and every metric in it. */
export class ProxyMetrics {
  readonly registry = new Registry();

  readonly downstreamRequestsTotal: CounterFamily<'direction' | 'code_class' | 'response_code'>;
  readonly downstreamRequestDuration: HistogramFamily<'direction'>;
  readonly downstreamRequestsActive: GaugeFamily<'direction'>;
  readonly downstreamConnections: CounterFamily<'listener'>;
  readonly downstreamConnectionsActive: GaugeFamily<'listener'>;
  readonly downstreamBytesReceived: CounterFamily<'listener'>;
  readonly downstreamBytesSent: CounterFamily<'listener'>;
  readonly upstreamRequests: CounterFamily<'cluster' | 'endpoint' | 'code_class' | 'response_code'>;
  readonly upstreamRequestsActive: GaugeFamily<'cluster'>;
  readonly upstreamConnectFailures: CounterFamily<'cluster'>;
  readonly upstreamConnectionsActive: GaugeFamily<'cluster'>;
  readonly upstreamResetBudgetExhausted: CounterFamily<'cluster'>;
  readonly upstreamPendingOverflow: CounterFamily<'cluster'>;
  readonly upstreamRequestOverflow: CounterFamily<'cluster'>;
  readonly upstreamEjections: CounterFamily<'cluster' | 'reason'>;
  readonly upstreamRetries: CounterFamily<'cluster'>;
  readonly upstreamRequestDuration: HistogramFamily<'cluster'>;
  readonly upstreamRetriesSkipped: CounterFamily<'cluster' | 'reason'>;
  readonly upstreamEndpointsEjected: GaugeFamily<'cluster'>;
  readonly upstreamHealthChecks: CounterFamily<'cluster' | 'result'>;
  readonly upstreamEndpointsUnhealthy: GaugeFamily<'cluster'>;
  readonly localReplies: CounterFamily<'reason'>;
  /** HTTP requests and TCP connections by the SPIFFE ID mTLS proved (a bounded label). */
  readonly peerRequests: CounterFamily<'peer' | 'protocol'>;
  private readonly peerCells = new Map<string, CounterCell>();
  /** The "other" cells of peerRequests, [http, tcp], bound on first use. */
  private readonly peerOther: [CounterCell | undefined, CounterCell | undefined] = [undefined, undefined];
  /** Distinct peers labelled so far, http and tcp: each protocol has its own MAX_PEER_LABELS. */
  private readonly peerLabelled: [number, number] = [0, 0];
  readonly tcpConnections: CounterFamily<'cluster'>;
  /** RBAC decisions (src/authz) by protocol, decision and the policy that decided ('-' when none matched). */
  readonly rbacDecisions: CounterFamily<'protocol' | 'decision' | 'policy'>;
  /** JWT checks (envoy.filters.http.jwt_authn) by provider and result. */
  readonly jwtAuthn: CounterFamily<'provider' | 'result'>;
  /** Remote JWKS fetches by result: rare, a plain prom-client counter. */
  readonly jwksFetches: Counter<'result'>;
  /** Access log lines dropped because the destination fell behind by more than the log's buffer bound. */
  readonly accessLogDropped: CounterCell;
  /** Rare events (config changes): plain prom-client metrics. */
  readonly configVersionInfo: Gauge<'version'>;
  /** Rare by nature (refusals, overload transitions): plain prom-client metrics. */
  readonly downstreamConnectionsRejected: Counter<'listener' | 'reason'>;
  readonly listenerAcceptPauses: Counter<'listener'>;
  readonly downstreamHttp2ProtocolCloses: Counter<'listener'>;
  readonly tlsHandshakeFailures: Counter<'direction' | 'reason'>;
  readonly upstreamTlsHandshakes: Counter<'cluster' | 'session'>;
  readonly downstreamConnectionsByTransport: Counter<'listener' | 'transport'>;
  readonly overloadActive: Gauge;
  readonly configUpdates: Counter<'result'>;

  /** [direction * RESPONSE_CODES.length + codeIndex], filled lazily (a series appears with its first response). */
  private readonly downstreamChildren: (CounterCell | undefined)[] = new Array<CounterCell | undefined>(DIRECTIONS.length * RESPONSE_CODES.length).fill(undefined);
  /** codeIndex → dense slot of upstream per-endpoint rows (-1 until the code is first seen). */
  private readonly codeSlots = new Int16Array(RESPONSE_CODES.length).fill(-1);
  private codeSlotCount = 0;
  private readonly durationChildren: HistogramCell[];
  private readonly activeChildren: GaugeCell[];
  private readonly listeners = new Map<string, ListenerStats>();
  private readonly clusters = new Map<string, ClusterStats>();
  private readonly reasons = new Map<string, CounterCell>();
  private configVersion: string | undefined;

  constructor(opts: ProxyMetricsOptions = {}) {
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });

    this.downstreamRequestsTotal = new CounterFamily({
      name: 'pillion_downstream_requests_total',
      help:
        'HTTP requests received from downstream, by direction, response code class (1xx-5xx) and exact response code ' +
        '(100-599); both are "other" when no response was sent (the client left first) or the status was outside 100-599.',
      labelNames: ['direction', 'code_class', 'response_code'] as const,
      registers,
    });
    this.downstreamRequestDuration = new HistogramFamily({
      name: 'pillion_downstream_request_duration_seconds',
      help: 'Time from the first byte of a downstream request to the end of its response, in seconds.',
      labelNames: ['direction'] as const,
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.downstreamRequestsActive = new GaugeFamily({
      name: 'pillion_downstream_requests_active',
      help: 'HTTP requests from downstream in progress.',
      labelNames: ['direction'] as const,
      registers,
    });
    this.downstreamConnections = new CounterFamily({
      name: 'pillion_downstream_connections_total',
      help: 'Connections accepted by each listener.',
      labelNames: ['listener'] as const,
      registers,
    });
    this.downstreamConnectionsActive = new GaugeFamily({
      name: 'pillion_downstream_connections_active',
      help: 'Open downstream connections per listener.',
      labelNames: ['listener'] as const,
      registers,
    });
    this.downstreamBytesReceived = new CounterFamily({
      name: 'pillion_downstream_bytes_received_total',
      help: 'Bytes received from downstream per listener.',
      labelNames: ['listener'] as const,
      registers,
    });
    this.downstreamBytesSent = new CounterFamily({
      name: 'pillion_downstream_bytes_sent_total',
      help: 'Bytes sent to downstream per listener.',
      labelNames: ['listener'] as const,
      registers,
    });
    this.upstreamRequests = new CounterFamily({
      name: 'pillion_upstream_requests_total',
      help:
        'Upstream request attempts by cluster, endpoint, response code class (1xx-5xx) and exact response code (100-599); ' +
        'both are "other" when no response came (connect failure, reset, timeout) or the status was outside 100-599.',
      labelNames: ['cluster', 'endpoint', 'code_class', 'response_code'] as const,
      registers,
    });
    this.upstreamRequestsActive = new GaugeFamily({
      name: 'pillion_upstream_requests_active',
      help: 'Upstream requests in progress per cluster.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamConnectFailures = new CounterFamily({
      name: 'pillion_upstream_connect_failures_total',
      help: 'Failed upstream connection attempts (refused, timed out, TLS failure) per cluster.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamConnectionsActive = new GaugeFamily({
      name: 'pillion_upstream_connections_active',
      help: 'Open upstream connections per cluster.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamResetBudgetExhausted = new CounterFamily({
      name: 'pillion_upstream_http2_reset_budget_exhausted_total',
      help:
        'Upstream HTTP/2 connections that used up their stream-reset budget (200, then 20/s): later cancels let the ' +
        'stream finish unread instead of resetting it, and new streams go to a fresh connection.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamPendingOverflow = new CounterFamily({
      name: 'pillion_upstream_pending_overflow_total',
      help:
        "Requests refused with 503 overflow because the cluster's queue of requests waiting for an upstream connection " +
        'was full (max_pending_requests, default 1024).',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamRequestOverflow = new CounterFamily({
      name: 'pillion_upstream_requests_overflow_total',
      help:
        'Requests refused with 503 overflow because the cluster had its most requests in flight ' +
        '(circuitBreakers.maxRequests / max_requests, default 1024).',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamRequestDuration = new HistogramFamily({
      name: 'pillion_upstream_request_duration_seconds',
      help: 'Time of each upstream attempt, from its start to the end of its response (or its failure), per cluster (Envoy\'s upstream_rq_time).',
      labelNames: ['cluster'] as const,
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.upstreamRetries = new CounterFamily({
      name: 'pillion_upstream_retries_total',
      help: 'Failed attempts tried again by the route retry policy (each retry counted once).',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamRetriesSkipped = new CounterFamily({
      name: 'pillion_upstream_retries_skipped_total',
      help:
        'Retries the policy called for that were not made, by reason: attempts (all used), budget (the retry ' +
        'budget or max_retries was spent), body (the request body was larger than the retry buffer).',
      labelNames: ['cluster', 'reason'] as const,
      registers,
    });
    this.upstreamEjections = new CounterFamily({
      name: 'pillion_upstream_ejections_total',
      help:
        'Endpoints ejected by outlier detection, by reason: consecutive_5xx, consecutive_gateway_failure, ' +
        'consecutive_local_origin_failure, success_rate, failure_percentage.',
      labelNames: ['cluster', 'reason'] as const,
      registers,
    });
    this.upstreamEndpointsEjected = new GaugeFamily({
      name: 'pillion_upstream_endpoints_ejected',
      help: 'Endpoints of the cluster ejected by outlier detection now.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.upstreamHealthChecks = new CounterFamily({
      name: 'pillion_upstream_health_checks_total',
      help: 'Active health-check probes per cluster, by result (success, failure: refused, timed out, or an unexpected status).',
      labelNames: ['cluster', 'result'] as const,
      registers,
    });
    this.upstreamEndpointsUnhealthy = new GaugeFamily({
      name: 'pillion_upstream_endpoints_unhealthy',
      help: 'Endpoints of the cluster not passing active health checks now (failed, or not probed yet); 0 without health checks.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.peerRequests = new CounterFamily({
      name: 'pillion_downstream_peer_requests_total',
      help:
        'HTTP requests and TCP connections that arrived over mTLS, by the caller\'s SPIFFE ID (at most ' +
        `${MAX_PEER_LABELS} distinct values per protocol; the rest count as "other").`,
      labelNames: ['peer', 'protocol'] as const,
      registers,
    });
    this.localReplies = new CounterFamily({
      name: 'pillion_local_replies_total',
      help: 'Responses the proxy made itself, by reason (the x-pillion-reason value).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.tcpConnections = new CounterFamily({
      name: 'pillion_tcp_connections_total',
      help: 'Proxied TCP connections per upstream cluster.',
      labelNames: ['cluster'] as const,
      registers,
    });
    this.rbacDecisions = new CounterFamily({
      name: 'pillion_rbac_decisions_total',
      help:
        'RBAC decisions (envoy.filters.http.rbac, envoy.filters.network.rbac) by protocol (http, tcp), decision (allowed, ' +
        'denied, shadow_allowed, shadow_denied) and policy: the policy that matched, or "-" when none did (an allow ' +
        'list that matched nothing denies; a deny list that matched nothing allows).',
      labelNames: ['protocol', 'decision', 'policy'] as const,
      registers,
    });
    this.jwtAuthn = new CounterFamily({
      name: 'pillion_jwt_authn_total',
      help:
        'JWT checks by provider and result: verified, or why the token was refused (missing, malformed, alg_not_allowed, ' +
        'bad_signature, unknown_key, expired, not_yet_valid, no_expiration, wrong_issuer, wrong_audience, jwks_unavailable).',
      labelNames: ['provider', 'result'] as const,
      registers,
    });
    this.jwksFetches = new Counter({
      name: 'pillion_jwks_fetches_total',
      help: 'Loads of JWKS from a URL or a file (jwt_authn remote_jwks, local_jwks filename) by result (success, failure).',
      labelNames: ['result'] as const,
      registers,
    });
    this.accessLogDropped = new CounterFamily({
      name: 'pillion_access_log_dropped_total',
      help:
        'Access log lines dropped, not written: the destination (stdout or file) was slower than the traffic and ' +
        'the lines waiting for it reached the buffer bound (16 MiB).',
      labelNames: [] as const,
      registers,
    }).cell();
    new Counter({
      name: 'pillion_log_dropped_total',
      help:
        'Process log lines (not access lines) dropped because stdout took nothing while 17 MiB of lines were waiting ' +
        'for it (a stuck log reader): the proxy keeps serving instead of blocking on its log.',
      registers,
      collect(): void {
        this.reset();
        this.inc(processLogDropped());
      },
    });
    new Counter({
      name: 'pillion_upstream_http1_raw_bodies_total',
      help:
        'HTTP/1.1 response bodies of 128 KiB or more (content-length, plaintext upstream) read around the parser ' +
        'into reused buffers, the fast path for large bodies; those over TLS or chunked are not counted.',
      registers,
      collect(): void {
        this.reset();
        this.inc(rawBodyStats.responses);
      },
    });
    new Counter({
      name: 'pillion_upstream_http1_raw_body_bytes_total',
      help: 'Bytes of the response bodies in pillion_upstream_http1_raw_bodies_total.',
      registers,
      collect(): void {
        this.reset();
        this.inc(rawBodyStats.bytes);
      },
    });
    this.downstreamConnectionsRejected = new Counter({
      name: 'pillion_downstream_connections_rejected_total',
      help:
        'Connections closed before they carried anything, per listener and reason: limit (the listener was at its ' +
        'connection limit), overload (the overload manager was active), first_byte_timeout (silent past the ' +
        "listener's first-byte deadline).",
      labelNames: ['listener', 'reason'] as const,
      registers,
    });
    this.listenerAcceptPauses = new Counter({
      name: 'pillion_listener_accept_pauses_total',
      help:
        'Times a listener closed its listening socket for 0.25 - 4 s because the process was out of file ' +
        'descriptors (EMFILE/ENFILE); the kernel refuses connections meanwhile. Raise the fd limit (ulimit -n).',
      labelNames: ['listener'] as const,
      registers,
    });
    this.tlsHandshakeFailures = new Counter({
      name: 'pillion_tls_handshake_failures_total',
      help:
        'TLS connections refused, per direction (inbound: terminated here; outbound: originated here) and reason: ' +
        'not_tls (plaintext on a TLS-only port), no_client_certificate, untrusted_certificate (another CA), ' +
        'certificate_expired, certificate_not_yet_valid, no_spiffe_id, peer_identity (a SPIFFE ID the destination ' +
        'may not have), secrets_missing (no certificate or trust bundle yet), timeout, protocol, other.',
      labelNames: ['direction', 'reason'] as const,
      registers,
    });
    this.upstreamTlsHandshakes = new Counter({
      name: 'pillion_upstream_tls_handshakes_total',
      help:
        'TLS handshakes to upstreams completed, per cluster and session: resumed (the session of an earlier ' +
        'connection to the endpoint, no certificates exchanged) or full. Mostly full means connections to the ' +
        'cluster are reopened often and each pays certificate signing and verification on both sides.',
      labelNames: ['cluster', 'session'] as const,
      registers,
    });
    this.downstreamConnectionsByTransport = new Counter({
      name: 'pillion_downstream_connections_transport_total',
      help: 'Connections accepted on inbound listeners, per listener and transport (tls: mTLS terminated here; plaintext).',
      labelNames: ['listener', 'transport'] as const,
      registers,
    });
    this.downstreamHttp2ProtocolCloses = new Counter({
      name: 'pillion_downstream_http2_protocol_closes_total',
      help:
        'Downstream HTTP/2 connections the proxy ended with a GOAWAY for the client\'s misbehaviour: a protocol error ' +
        'or a flood (rapid reset, CONTINUATION or control-frame floods, a header block it cannot decode), per listener.',
      labelNames: ['listener'] as const,
      registers,
    });
    this.overloadActive = new Gauge({
      name: 'pillion_overload_active',
      help: '1 while the proxy is past its memory threshold: new connections are refused and new requests get 503 overload.',
      // With --concurrency N each process has its own: 1 while any of them is past it.
      aggregator: 'max',
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

    this.durationChildren = DIRECTIONS.map((d) => this.downstreamRequestDuration.cell(d));
    this.activeChildren = DIRECTIONS.map((d) => this.downstreamRequestsActive.cell(d));
  }

  /** Counts one finished downstream request. */
  downstreamRequests(direction: Direction, status: number): void {
    const code = codeIndex(status);
    const i = dirIndex(direction) * RESPONSE_CODES.length + code;
    let child = this.downstreamChildren[i];
    if (child === undefined) {
      child = this.downstreamRequestsTotal.cell(direction, CODE_CLASSES[CLASS_OF_CODE[code]!]!, RESPONSE_CODES[code]!);
      this.downstreamChildren[i] = child;
    }
    child.inc();
  }

  /** The dense slot of a response code (its codeIndex), given in order of first use. */
  codeSlot(code: number): number {
    let slot = this.codeSlots[code]!;
    if (slot < 0) {
      slot = this.codeSlotCount++;
      this.codeSlots[code] = slot;
    }
    return slot;
  }

  observeDownstreamDuration(direction: Direction, seconds: number): void {
    this.durationChildren[dirIndex(direction)]!.observe(seconds);
  }

  /** The pre-bound active-requests gauge of a direction: inc() at request start, dec() at its end. */
  downstreamActive(direction: Direction): GaugeCell {
    return this.activeChildren[dirIndex(direction)]!;
  }

  listenerStats(listener: string): ListenerStats {
    let s = this.listeners.get(listener);
    if (s === undefined) {
      s = {
        connections: this.downstreamConnections.cell(listener),
        connectionsActive: this.downstreamConnectionsActive.cell(listener),
        bytesReceived: this.downstreamBytesReceived.cell(listener),
        bytesSent: this.downstreamBytesSent.cell(listener),
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

  /** One request (http) or connection (tcp) from an mTLS peer; the label set is bounded (MAX_PEER_LABELS). */
  peerRequest(spiffeId: string, protocol: 'http' | 'tcp'): void {
    const key = protocol === 'http' ? spiffeId : `tcp ${spiffeId}`;
    let c = this.peerCells.get(key);
    if (c === undefined) {
      const i = protocol === 'http' ? 0 : 1;
      if (this.peerLabelled[i] >= MAX_PEER_LABELS) {
        // Past the bound every new identity counts as "other": its cell is kept too, not looked up per request.
        c = this.peerOther[i] ??= this.peerRequests.cell('other', protocol);
      } else {
        c = this.peerRequests.cell(spiffeId, protocol);
        this.peerCells.set(key, c);
        this.peerLabelled[i]++;
      }
    }
    c.inc();
  }

  localReply(reason: Reason): void {
    let c = this.reasons.get(reason.id);
    if (c === undefined) {
      c = this.localReplies.cell(reason.id);
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
