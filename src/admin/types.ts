// What the admin server may ask of the running proxy: a narrow view, so the admin module knows no internals.
import type { Registry } from 'prom-client';
import type { ConfigSnapshot } from '../config/model.js';

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

export interface AdminSource {
  readonly registry: Registry;
  /** True once listeners are bound and every cluster they reference is known. */
  isReady(): boolean;
  snapshot(): ConfigSnapshot;
  /** Raw xDS resources behind the snapshot, as JSON-friendly objects with their versions (for /config_dump). */
  configDump(): unknown;
  clusters(): ClusterStatus[];
  listeners(): ListenerStatus[];
  setLogLevel(level: string): boolean;
  /** Starts draining (stop accepting, finish in-flight), resolves when drained. */
  drain(): Promise<void>;
}
