// Translates an xDS ClusterLoadAssignment (EDS) into the endpoints of the internal model.
import type { EndpointModel } from './model.js';
import { decodeMessage, MESSAGE_NAMES } from './protos.js';
import { invalid, socketAddress, wrapped, type Plain } from './values.js';

export interface LoadAssignmentModel {
  readonly clusterName: string;
  readonly endpoints: readonly EndpointModel[];
}

// Envoy routes to HEALTHY and UNKNOWN endpoints (UNKNOWN = no health information; DEGRADED only as a last resort).
const TAKES_TRAFFIC = new Set(['UNKNOWN', 'HEALTHY', undefined]);

/** Endpoints of a decoded ClusterLoadAssignment (also used for a STATIC cluster's inline load_assignment). */
export function endpointsFromLoadAssignment(cla: Plain | undefined, field = 'endpoints'): EndpointModel[] {
  const out: EndpointModel[] = [];
  (cla?.endpoints ?? []).forEach((loc: Plain, i: number) => {
    const region = String(loc.locality?.region ?? '');
    const zone = String(loc.locality?.zone ?? '');
    (loc.lb_endpoints ?? []).forEach((lbe: Plain, j: number) => {
      const path = `${field}[${i}].lb_endpoints[${j}]`;
      if (!lbe.endpoint) invalid(`${path}.endpoint: missing (endpoint_name is not supported)`);
      const { address, port } = socketAddress(lbe.endpoint.address, `${path}.endpoint.address`);
      if (port === 0) invalid(`${path}.endpoint.address.socket_address.port_value: must not be 0`);
      const weight = wrapped<number>(lbe.load_balancing_weight, 1);
      if (weight < 1) invalid(`${path}.load_balancing_weight: must be at least 1`);
      out.push({ address, port, weight, region, zone, healthy: TAKES_TRAFFIC.has(lbe.health_status) });
    });
  });
  return out;
}

/** Decode and validate a ClusterLoadAssignment resource; throws ResourceInvalid with the field at fault. */
export function translateClusterLoadAssignment(bytes: Uint8Array): LoadAssignmentModel {
  const cla = decodeMessage<Plain>(MESSAGE_NAMES.ClusterLoadAssignment, bytes);
  if (!cla.cluster_name) invalid('cluster_name: missing');
  return { clusterName: cla.cluster_name, endpoints: endpointsFromLoadAssignment(cla) };
}
