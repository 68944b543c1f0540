// What the admin server may ask of the running proxy: a narrow view, so the admin module knows no internals.
import type { Registry } from 'prom-client';
import type { ConfigSnapshot } from '../config/model.js';
import type { RawResource } from '../config/snapshot.js';

export interface EndpointStatus {
  address: string;
  port: number;
  weight: number;
  zone: string;
  region: string;
  /** EDS priority level (0 first; higher levels take traffic as lower ones lose health). */
  priority: number;
  /** The locality's load_balancing_weight (0 = none; used only with locality-weighted balancing). */
  localityWeight: number;
  healthy: boolean;
  activeRequests: number;
  /** Upstream connections open to this endpoint now (Envoy's per-host cx_active). */
  activeConnections: number;
  totalRequests: number;
  failedRequests: number;
  /** When outlier detection lets the endpoint back in (ISO time), or null when it is not ejected. */
  ejectedUntil: string | null;
  /** The ejection-time multiplier: ejections not yet decayed by healthy intervals. */
  timesEjected: number;
  /** What ejected the endpoint (the reason label of pillion_upstream_ejections_total); null when it is not ejected. */
  ejectionReason: 'consecutive_5xx' | 'consecutive_gateway_failure' | 'consecutive_local_origin_failure' | 'success_rate' | 'failure_percentage' | null;
  /** Percent of the last outlier-detection interval's calls that succeeded; null without calls or detection. */
  successRate: number | null;
  /** Active health checking: pending (not probed yet), healthy, unhealthy; null when the cluster has none. */
  healthCheck: 'pending' | 'healthy' | 'unhealthy' | null;
}

export interface ClusterStatus {
  name: string;
  lbPolicy: string;
  protocol: string;
  endpoints: EndpointStatus[];
}

export interface ListenerStatus {
  name: string;
  address: string;
  /** The bound port (the configured one, or the one the OS chose for port 0). */
  port: number;
  direction: string;
}

/** Envoy's server states (envoy.admin.v3.ServerInfo.State), as /ready and /server_info name them. */
export type ServerState = 'LIVE' | 'DRAINING' | 'PRE_INITIALIZING' | 'INITIALIZING';

/** Who this proxy is, for /server_info: Envoy's Node and the options it was started with. */
export interface ServerIdentity {
  readonly node: { readonly id: string; readonly cluster: string; readonly metadata: Readonly<Record<string, unknown>> };
  /** The command line's options under Envoy's CommandLineOptions field names where one fits. */
  readonly commandLineOptions: Readonly<Record<string, unknown>>;
}

/** One accepted xDS resource as the proxy holds it, with when it took this version of it. */
export interface DumpedResource extends RawResource {
  /** Milliseconds since the epoch at which the proxy accepted these bytes (unchanged bytes keep their time). */
  readonly lastUpdatedMs: number;
}

/** The raw material of Envoy's /config_dump: accepted resources by type, each type's version, the secrets. */
export interface ConfigDumpSource {
  readonly listeners: readonly DumpedResource[];
  readonly routes: readonly DumpedResource[];
  readonly clusters: readonly DumpedResource[];
  readonly endpoints: readonly DumpedResource[];
  readonly versions: Readonly<Record<string, string>>;
  /** Certificates and trust bundles by SDS name: their PEM certificates only, never a key. */
  readonly secrets: readonly DumpedSecret[];
}

export interface DumpedSecret {
  readonly name: string;
  readonly kind: 'tls_certificate' | 'validation_context';
  /** The certificate chain (tls_certificate) or the trusted CAs (validation_context). */
  readonly certificatesPem: string;
}

/** What /metrics and /stats read (a prom-client Registry fits). */
export type MetricsRegistry = Pick<Registry, 'metrics' | 'contentType' | 'getMetricsAsJSON'>;

/** One worker process of `--concurrency N` (N > 1), for /workers. */
export interface WorkerInfo {
  readonly index: number;
  readonly pid: number | null;
  readonly state: string;
  readonly configGeneration: number;
  readonly restarts: number;
  readonly lastExit: string | null;
}

export interface AdminSource {
  readonly registry: Registry;
  /** The metrics to serve, when they are more than `registry`'s (the workers', aggregated). */
  aggregateMetrics?(): Promise<MetricsRegistry>;
  /** Worker processes serving the listeners (Envoy's --concurrency); 1 when absent. */
  readonly concurrency?: number;
  /** The worker processes, with --concurrency N > 1 (empty otherwise). */
  workers?(): readonly WorkerInfo[];
  /** True once listeners are bound and every cluster they reference is known. */
  isReady(): boolean;
  /** LIVE exactly when isReady(); otherwise why not. */
  state(): ServerState;
  /** Milliseconds since the epoch at which the process started serving (for uptime). */
  readonly startedAtMs: number;
  identity(): ServerIdentity;
  snapshot(): ConfigSnapshot;
  /** Raw xDS resources behind the snapshot, as JSON-friendly objects with their versions (for /config_dump). */
  configDump(): unknown;
  /** The same resources, raw, for Envoy's /config_dump shape (src/admin/envoy-config-dump.ts). */
  configDumpSource(): ConfigDumpSource;
  clusters(): ClusterStatus[];
  /** When present, what /clusters serves instead: with --concurrency N > 1, asked of a worker process. */
  liveClusters?(): Promise<ClusterStatus[]>;
  listeners(): ListenerStatus[];
  setLogLevel(level: string): boolean;
  /** Starts draining (stop accepting, finish in-flight), of the inbound listeners only if asked; resolves when drained. */
  drain(options?: { inboundOnly?: boolean }): Promise<void>;
}
