// The xDS resource types as label values, shared by the proxy (pillion_xds_updates_total) and the control server
// (pillion_control_pushes_total, pillion_control_nacks_total, /proxies): one table, so a query can join the two.
// Envoy's own short names, as in its stats (listener_manager.lds.*, cluster_manager.cds.*, *.rds.*, *.eds.*, sds).
import { TYPE_URLS } from '../config/protos.js';
import type { ResourceKind } from './subscriptions.js';

export type XdsTypeLabel = 'lds' | 'rds' | 'cds' | 'eds' | 'sds';

export const XDS_TYPE_LABELS: readonly XdsTypeLabel[] = ['lds', 'rds', 'cds', 'eds', 'sds'];

const BY_TYPE_URL: ReadonlyMap<string, XdsTypeLabel> = new Map<string, XdsTypeLabel>([
  [TYPE_URLS.Listener, 'lds'],
  [TYPE_URLS.RouteConfiguration, 'rds'],
  [TYPE_URLS.Cluster, 'cds'],
  [TYPE_URLS.ClusterLoadAssignment, 'eds'],
  [TYPE_URLS.Secret, 'sds'],
]);

const BY_KIND: Readonly<Record<ResourceKind, XdsTypeLabel>> = {
  listeners: 'lds',
  routes: 'rds',
  clusters: 'cds',
  endpoints: 'eds',
  secrets: 'sds',
};

/** The label of a type URL, or undefined for a type neither side serves. */
export function xdsTypeLabel(typeUrl: string): XdsTypeLabel | undefined {
  return BY_TYPE_URL.get(typeUrl);
}

/** The label of the proxy's resource kind (its /config_dump?format=pillion keys: listeners, routes, …). */
export function kindLabel(kind: ResourceKind): XdsTypeLabel {
  return BY_KIND[kind];
}
