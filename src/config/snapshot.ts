// Builds one ConfigSnapshot from a set of xDS resources: translate each, drop and report the invalid (→ NACK).
import { translateCluster, type ClusterTranslation } from './cluster.js';
import { translateClusterLoadAssignment, type LoadAssignmentModel } from './endpoint.js';
import { translateListener } from './listener.js';
import type { ClusterModel, ConfigSnapshot, ListenerModel, RouteConfigModel } from './model.js';
import { TYPE_URLS } from './protos.js';
import { translateRouteConfiguration } from './route-config.js';
import { ResourceInvalid } from './values.js';

export interface RawResource {
  readonly name: string;
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

export interface ResourceSet {
  readonly listeners: readonly RawResource[];
  readonly routes: readonly RawResource[];
  readonly clusters: readonly RawResource[];
  readonly endpoints: readonly RawResource[];
}

/** One rejected resource: what a NACK's error_detail reports. */
export interface ResourceError {
  readonly typeUrl: string;
  readonly name: string;
  readonly message: string;
}

/**
 * Translate every resource; an invalid one is left out and reported, the valid ones are used. A resource whose
 * decoded name differs from the name it was sent under is invalid too (the xDS client keys by that name).
 */
export function buildSnapshot(resources: ResourceSet, version: string): { snapshot: ConfigSnapshot; errors: ResourceError[] } {
  const errors: ResourceError[] = [];
  const each = <T>(list: readonly RawResource[], typeUrl: string, translate: (b: Uint8Array) => T, nameOf: (t: T) => string): T[] => {
    const out: T[] = [];
    const seen = new Set<string>();
    for (const r of list) {
      try {
        if (r.typeUrl !== typeUrl) throw new ResourceInvalid(`type ${r.typeUrl} where ${typeUrl} was expected`);
        const t = translate(r.value);
        if (r.name && nameOf(t) !== r.name) throw new ResourceInvalid(`name: ${JSON.stringify(nameOf(t))} does not match the resource name`);
        if (seen.has(nameOf(t))) throw new ResourceInvalid('duplicate resource name');
        seen.add(nameOf(t));
        out.push(t);
      } catch (e) {
        errors.push({ typeUrl, name: r.name, message: e instanceof Error ? e.message : String(e) });
      }
    }
    return out;
  };

  const listeners = new Map<string, ListenerModel>();
  const routeConfigs = new Map<string, RouteConfigModel>();
  for (const rc of each(resources.listeners, TYPE_URLS.Listener, translateListener, (t) => t.model.name)) {
    listeners.set(rc.model.name, rc.model);
    for (const inline of rc.inlineRoutes) routeConfigs.set(inline.name, inline);
  }
  for (const rc of each(resources.routes, TYPE_URLS.RouteConfiguration, translateRouteConfiguration, (t) => t.name)) {
    routeConfigs.set(rc.name, rc);
  }
  const assignments = new Map<string, LoadAssignmentModel>();
  for (const la of each(resources.endpoints, TYPE_URLS.ClusterLoadAssignment, translateClusterLoadAssignment, (t) => t.clusterName)) {
    assignments.set(la.clusterName, la);
  }
  const clusters = new Map<string, ClusterModel>();
  for (const ct of each(resources.clusters, TYPE_URLS.Cluster, translateCluster, (t: ClusterTranslation) => t.model.name)) {
    const model = ct.edsServiceName !== undefined
      ? { ...ct.model, endpoints: assignments.get(ct.edsServiceName)?.endpoints ?? [] }
      : ct.model;
    clusters.set(model.name, model);
  }
  return { snapshot: { version, listeners, routeConfigs, clusters }, errors };
}
