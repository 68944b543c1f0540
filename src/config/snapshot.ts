// Builds one ConfigSnapshot from a set of xDS resources: translate each, drop and report the invalid (→ NACK).
import { translateCluster, type ClusterTranslation } from './cluster.js';
import { translateClusterLoadAssignment, type LoadAssignmentModel } from './endpoint.js';
import { translateListener } from './listener.js';
import type { ClusterModel, ConfigSnapshot, ListenerModel, RouteConfigModel } from './model.js';
import { TYPE_URLS } from './protos.js';
import { translateRouteConfiguration } from './route-config.js';
import { collectWarnings, ResourceInvalid } from './values.js';
import { translateSecret } from './transport-socket.js';
import type { SecretModel } from '../tls/secrets.js';

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
  /** SDS Secrets (they go to the SecretStore, not the snapshot). */
  readonly secrets?: readonly RawResource[];
}

/** One rejected resource: what a NACK's error_detail reports. */
export interface ResourceError {
  readonly typeUrl: string;
  readonly name: string;
  readonly message: string;
}

/** A value a resource carried that was adjusted to work (e.g. a duration clamped to the longest timer). */
export interface ResourceWarning {
  readonly typeUrl: string;
  readonly name: string;
  readonly message: string;
}

/**
 * Translate every resource; an invalid one is left out and reported, the valid ones are used. Warnings come
 * from the resources translated this time (a resource unchanged since the last call is not translated again,
 * so its warnings are not repeated). A resource whose
 * decoded name differs from the name it was sent under is invalid too (the xDS client keys by that name).
 */
export function buildSnapshot(
  resources: ResourceSet,
  version: string,
  cache: TranslationCache = new TranslationCache(),
): { snapshot: ConfigSnapshot; errors: ResourceError[]; warnings: ResourceWarning[]; secrets: Map<string, SecretModel> } {
  const errors: ResourceError[] = [];
  const warnings: ResourceWarning[] = [];
  cache.begin();
  const each = <T>(list: readonly RawResource[], typeUrl: string, translate: (b: Uint8Array) => T, nameOf: (t: T) => string): T[] => {
    const out: T[] = [];
    const seen = new Set<string>();
    for (const r of list) {
      try {
        if (r.typeUrl !== typeUrl) throw new ResourceInvalid(`type ${r.typeUrl} where ${typeUrl} was expected`);
        const { value: t, warnings: w } = collectWarnings(() => cache.translate(typeUrl, r.name, r.value, translate));
        for (const message of w) warnings.push({ typeUrl, name: r.name, message });
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
    const model = ct.edsServiceName !== undefined ? cache.withEndpoints(ct, assignments.get(ct.edsServiceName)) : ct.model;
    clusters.set(model.name, model);
  }
  const secrets = new Map<string, SecretModel>();
  for (const sec of each(resources.secrets ?? [], TYPE_URLS.Secret, translateSecret, (t) => t.name)) secrets.set(sec.name, sec.secret);
  cache.end();
  return { snapshot: { version, listeners, routeConfigs, clusters }, errors, warnings, secrets };
}

/**
 * Remembers translations by resource bytes, so an update re-translates only the resources that changed and
 * unchanged ones keep the very same model objects (the cluster manager then leaves their state untouched).
 */
export class TranslationCache {
  private previous = new Map<string, { bytes: Uint8Array; value: unknown }>();
  private current = new Map<string, { bytes: Uint8Array; value: unknown }>();
  private previousMerged = new Map<ClusterTranslation, { assignment: LoadAssignmentModel | undefined; model: ClusterModel }>();
  private currentMerged = new Map<ClusterTranslation, { assignment: LoadAssignmentModel | undefined; model: ClusterModel }>();

  begin(): void {
    this.current = new Map();
    this.currentMerged = new Map();
  }

  end(): void {
    this.previous = this.current;
    this.previousMerged = this.currentMerged;
  }

  translate<T>(typeUrl: string, name: string, bytes: Uint8Array, translate: (b: Uint8Array) => T): T {
    const key = `${typeUrl} ${name}`;
    const hit = this.previous.get(key) ?? this.current.get(key);
    if (hit !== undefined && Buffer.compare(hit.bytes, bytes) === 0) {
      this.current.set(key, hit);
      return hit.value as T;
    }
    const value = translate(bytes);
    this.current.set(key, { bytes, value });
    return value;
  }

  withEndpoints(ct: ClusterTranslation, assignment: LoadAssignmentModel | undefined): ClusterModel {
    const hit = this.previousMerged.get(ct);
    if (hit !== undefined && hit.assignment === assignment) {
      this.currentMerged.set(ct, hit);
      return hit.model;
    }
    // The overprovisioning factor travels with the endpoints (ClusterLoadAssignment.policy), not the Cluster.
    const factor = assignment?.overprovisioningFactor;
    const model = { ...ct.model, endpoints: assignment?.endpoints ?? [], ...(factor !== undefined ? { overprovisioningFactor: factor } : {}) };
    this.currentMerged.set(ct, { assignment, model });
    return model;
  }
}
