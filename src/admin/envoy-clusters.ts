// /clusters in Envoy's two shapes (admin docs, "GET /clusters"): the `cluster::host::stat::value` text that
// scripts grep, and ?format=json as envoy.admin.v3.Clusters. Built from the same ClusterStatus as our own JSON.
import type { CircuitBreakersModel } from '../config/model.js';
import type { ClusterStatus, EndpointStatus } from './types.js';

/** A cluster's circuit-breaker thresholds, from the config snapshot; undefined for a cluster it no longer has. */
export type BreakersOf = (cluster: string) => CircuitBreakersModel | undefined;

function hostOf(e: EndpointStatus): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/** Envoy's HostUtility::healthFlagsToString: each failing flag behind a '/', in Envoy's order; else "healthy". */
export function healthFlags(e: EndpointStatus): string {
  let flags = '';
  if (e.healthCheck === 'unhealthy') flags += '/failed_active_hc';
  if (e.ejectedUntil !== null) flags += '/failed_outlier_check';
  if (!e.healthy) flags += '/failed_eds_health';
  if (e.healthCheck === 'pending') flags += '/pending_active_hc';
  return flags === '' ? 'healthy' : flags;
}

function succeeded(e: EndpointStatus): number {
  return Math.max(0, e.totalRequests - e.failedRequests);
}

export function clustersText(clusters: readonly ClusterStatus[], breakers: BreakersOf): string {
  const lines: string[] = [];
  for (const c of clusters) {
    const n = c.name;
    lines.push(`${n}::observability_name::${n}`);
    const cb = breakers(n);
    if (cb !== undefined) {
      lines.push(
        `${n}::default_priority::max_connections::${cb.maxConnections}`,
        `${n}::default_priority::max_pending_requests::${cb.maxPendingRequests}`,
        `${n}::default_priority::max_requests::${cb.maxRequests}`,
        `${n}::default_priority::max_retries::${cb.maxRetries}`,
      );
    }
    lines.push(`${n}::added_via_api::true`);
    for (const e of c.endpoints) {
      const p = `${n}::${hostOf(e)}::`;
      lines.push(
        `${p}cx_active::${e.activeConnections}`,
        `${p}rq_active::${e.activeRequests}`,
        `${p}rq_error::${e.failedRequests}`,
        `${p}rq_success::${succeeded(e)}`,
        `${p}rq_total::${e.totalRequests}`,
        `${p}hostname::`,
        `${p}health_flags::${healthFlags(e)}`,
        `${p}weight::${e.weight}`,
        `${p}region::${e.region}`,
        `${p}zone::${e.zone}`,
        `${p}sub_zone::`,
        `${p}canary::false`,
        `${p}priority::${e.priority}`,
        // Envoy prints -1 while the outlier detector has no rate for the host.
        `${p}success_rate::${e.successRate ?? -1}`,
      );
    }
  }
  return lines.length === 0 ? '' : lines.join('\n') + '\n';
}

/** uint64 values are strings in proto3 JSON; Envoy leaves `type` out for counters (COUNTER is the enum's 0). */
function stat(name: string, value: number, gauge = false): Record<string, string> {
  return gauge ? { name, type: 'GAUGE', value: String(value) } : { name, value: String(value) };
}

function hostStatus(e: EndpointStatus): Record<string, unknown> {
  const health: Record<string, unknown> = { eds_health_status: e.healthy ? 'HEALTHY' : 'UNHEALTHY' };
  if (e.healthCheck === 'unhealthy') health.failed_active_health_check = true;
  if (e.ejectedUntil !== null) health.failed_outlier_check = true;
  if (e.healthCheck === 'pending') health.pending_active_hc = true;
  return {
    address: { socket_address: { address: e.address, port_value: e.port } },
    stats: [
      stat('cx_active', e.activeConnections, true),
      stat('rq_active', e.activeRequests, true),
      stat('rq_error', e.failedRequests),
      stat('rq_success', succeeded(e)),
      stat('rq_total', e.totalRequests),
    ],
    health_status: health,
    weight: e.weight,
    locality: { region: e.region, zone: e.zone },
    priority: e.priority,
    ...(e.successRate === null ? {} : { success_rate: { value: e.successRate } }),
  };
}

/** envoy.admin.v3.Clusters as proto3 JSON. */
export function clustersJson(clusters: readonly ClusterStatus[], breakers: BreakersOf): { cluster_statuses: unknown[] } {
  return {
    cluster_statuses: clusters.map((c) => {
      const cb = breakers(c.name);
      return {
        name: c.name,
        observability_name: c.name,
        added_via_api: true,
        host_statuses: c.endpoints.map(hostStatus),
        ...(cb === undefined
          ? {}
          : {
              circuit_breakers: {
                thresholds: [
                  { priority: 'DEFAULT', max_connections: cb.maxConnections, max_pending_requests: cb.maxPendingRequests, max_requests: cb.maxRequests, max_retries: cb.maxRetries },
                ],
              },
            }),
      };
    }),
  };
}
