// Translates an xDS ClusterLoadAssignment (EDS) into the endpoints of the internal model.
import type { EndpointModel } from './model.js';
import { decodeMessage, MESSAGE_NAMES } from './protos.js';
import { invalid, socketAddress, wrapped, type Plain } from './values.js';

export interface LoadAssignmentModel {
  readonly clusterName: string;
  readonly endpoints: readonly EndpointModel[];
  /** policy.overprovisioning_factor (percent); absent = Envoy's default. */
  readonly overprovisioningFactor?: number;
}

/** Envoy's proto rule for LocalityLbEndpoints.priority (`lte: 128`). */
const MAX_PRIORITY = 128;

/** policy.overprovisioning_factor of a ClusterLoadAssignment (Envoy: `gt: 0`), or undefined when unset. */
export function overprovisioningFactorOf(cla: Plain | undefined, field = 'policy'): number | undefined {
  const factor = cla?.policy?.overprovisioning_factor;
  if (factor === undefined || factor === null) return undefined;
  const value = wrapped<number>(factor, 0);
  if (value < 1) invalid(`${field}.overprovisioning_factor: must be above 0`);
  return value;
}

// Envoy routes to HEALTHY and UNKNOWN endpoints (UNKNOWN = no health information; DEGRADED only as a last resort).
const TAKES_TRAFFIC = new Set(['UNKNOWN', 'HEALTHY', undefined]);

/** Endpoints of a decoded ClusterLoadAssignment (also used for a STATIC cluster's inline load_assignment). */
export function endpointsFromLoadAssignment(cla: Plain | undefined, field = 'endpoints'): EndpointModel[] {
  const out: EndpointModel[] = [];
  (cla?.endpoints ?? []).forEach((loc: Plain, i: number) => {
    const region = String(loc.locality?.region ?? '');
    const zone = String(loc.locality?.zone ?? '');
    const priority = Number(loc.priority ?? 0);
    if (priority > MAX_PRIORITY) invalid(`${field}[${i}].priority: ${priority} is above ${MAX_PRIORITY}`);
    // Unset is "no weight" (0): with locality-weighted balancing such a locality gets no load, as in Envoy.
    const localityWeight = wrapped<number>(loc.load_balancing_weight, 0);
    if (loc.load_balancing_weight && localityWeight < 1) invalid(`${field}[${i}].load_balancing_weight: must be at least 1`);
    (loc.lb_endpoints ?? []).forEach((lbe: Plain, j: number) => {
      const path = `${field}[${i}].lb_endpoints[${j}]`;
      if (!lbe.endpoint) invalid(`${path}.endpoint: missing (endpoint_name is not supported)`);
      const { address, port } = socketAddress(lbe.endpoint.address, `${path}.endpoint.address`);
      if (port === 0) invalid(`${path}.endpoint.address.socket_address.port_value: must not be 0`);
      const weight = wrapped<number>(lbe.load_balancing_weight, 1);
      if (weight < 1) invalid(`${path}.load_balancing_weight: must be at least 1`);
      out.push({ address, port, weight, region, zone, healthy: TAKES_TRAFFIC.has(lbe.health_status), priority, localityWeight });
    });
  });
  return out;
}

/** Decode and validate a ClusterLoadAssignment resource; throws ResourceInvalid with the field at fault. */
export function translateClusterLoadAssignment(bytes: Uint8Array): LoadAssignmentModel {
  const cla = decodeMessage<Plain>(MESSAGE_NAMES.ClusterLoadAssignment, bytes);
  if (!cla.cluster_name) invalid('cluster_name: missing');
  const overprovisioningFactor = overprovisioningFactorOf(cla);
  const endpoints = endpointsFromLoadAssignment(cla);
  return overprovisioningFactor === undefined
    ? { clusterName: cla.cluster_name, endpoints }
    : { clusterName: cla.cluster_name, endpoints, overprovisioningFactor };
}
