// /config_dump in Envoy's shape (envoy.admin.v3.ConfigDump): one Any per resource type, each accepted resource
// as a dynamic active one with its version and when the proxy took it, ?resource= to list one repeated field's
// elements (each an Any of its own), ?mask= to trim, ?include_eds for endpoints (as Envoy: not there by default).
import type { ConfigDumpSource, DumpedResource, DumpedSecret } from './types.js';
import { anyToJson, type Json } from './proto-json.js';
import { applyMask, parseMask } from './field-mask.js';
import { TYPE_URLS } from '../config/protos.js';

const ADMIN = 'type.googleapis.com/envoy.admin.v3.';

/** Each ?resource= value Envoy accepts → the config it lives in and its element type. */
const RESOURCE_FIELDS: ReadonlyMap<string, { readonly config: string; readonly element: string }> = new Map([
  ['static_clusters', { config: 'ClustersConfigDump', element: 'ClustersConfigDump.StaticCluster' }],
  ['dynamic_active_clusters', { config: 'ClustersConfigDump', element: 'ClustersConfigDump.DynamicCluster' }],
  ['dynamic_warming_clusters', { config: 'ClustersConfigDump', element: 'ClustersConfigDump.DynamicCluster' }],
  ['static_endpoint_configs', { config: 'EndpointsConfigDump', element: 'EndpointsConfigDump.StaticEndpointConfig' }],
  ['dynamic_endpoint_configs', { config: 'EndpointsConfigDump', element: 'EndpointsConfigDump.DynamicEndpointConfig' }],
  ['static_listeners', { config: 'ListenersConfigDump', element: 'ListenersConfigDump.StaticListener' }],
  ['dynamic_listeners', { config: 'ListenersConfigDump', element: 'ListenersConfigDump.DynamicListener' }],
  ['static_route_configs', { config: 'RoutesConfigDump', element: 'RoutesConfigDump.StaticRouteConfig' }],
  ['dynamic_route_configs', { config: 'RoutesConfigDump', element: 'RoutesConfigDump.DynamicRouteConfig' }],
  ['static_secrets', { config: 'SecretsConfigDump', element: 'SecretsConfigDump.StaticSecret' }],
  ['dynamic_active_secrets', { config: 'SecretsConfigDump', element: 'SecretsConfigDump.DynamicSecret' }],
  ['dynamic_warming_secrets', { config: 'SecretsConfigDump', element: 'SecretsConfigDump.DynamicSecret' }],
]);

export interface ConfigDumpQuery {
  readonly resource: string | null;
  readonly mask: string | null;
  readonly includeEds: boolean;
}

export type ConfigDumpAnswer = { readonly status: 200; readonly body: Json } | { readonly status: 404; readonly message: string };

type JsonObject = { [k: string]: Json };

function resourceJson(r: DumpedResource): JsonObject {
  try {
    return anyToJson(r.typeUrl, r.value);
  } catch {
    // Unreachable for accepted resources (the translator decoded them); named rather than dropped.
    return { '@type': r.typeUrl, name: r.name };
  }
}

/** version_info and last_updated of one dynamic resource; last_updated is left out when never recorded. */
function stamp(version: string | undefined, r: DumpedResource): JsonObject {
  return {
    ...(version ? { version_info: version } : {}),
    ...(r.lastUpdatedMs > 0 ? { last_updated: new Date(r.lastUpdatedMs).toISOString() } : {}),
  };
}

/** An SDS secret as Envoy's Secret, certificates only: the private key is never read into the dump. */
function secretJson(s: DumpedSecret): JsonObject {
  const pem = { inline_string: s.certificatesPem };
  const body: JsonObject =
    s.kind === 'tls_certificate'
      ? { tls_certificate: { certificate_chain: pem, private_key: { inline_string: '[redacted]' } } }
      : { validation_context: { trusted_ca: pem } };
  return { '@type': TYPE_URLS.Secret, name: s.name, ...body };
}

/** Every config's repeated fields, by config name (empty fields included; the JSON leaves them out). */
interface ConfigParts {
  readonly version: string | undefined;
  readonly fields: Readonly<Record<string, JsonObject[]>>;
}

function buildConfigs(src: ConfigDumpSource): Map<string, ConfigParts> {
  const v = src.versions;
  return new Map<string, ConfigParts>([
    ['ClustersConfigDump', { version: v.clusters, fields: { dynamic_active_clusters: src.clusters.map((r) => ({ ...stamp(v.clusters, r), cluster: resourceJson(r) })) } }],
    [
      'EndpointsConfigDump',
      { version: undefined, fields: { dynamic_endpoint_configs: src.endpoints.map((r) => ({ ...stamp(v.endpoints, r), endpoint_config: resourceJson(r) })) } },
    ],
    [
      'ListenersConfigDump',
      { version: v.listeners, fields: { dynamic_listeners: src.listeners.map((r) => ({ name: r.name, active_state: { ...stamp(v.listeners, r), listener: resourceJson(r) } })) } },
    ],
    ['RoutesConfigDump', { version: undefined, fields: { dynamic_route_configs: src.routes.map((r) => ({ ...stamp(v.routes, r), route_config: resourceJson(r) })) } }],
    [
      'SecretsConfigDump',
      { version: undefined, fields: { dynamic_active_secrets: src.secrets.map((s) => ({ name: s.name, ...(v.secrets ? { version_info: v.secrets } : {}), secret: secretJson(s) })) } },
    ],
  ]);
}

export function envoyConfigDump(src: ConfigDumpSource, q: ConfigDumpQuery): ConfigDumpAnswer {
  const configs = buildConfigs(src);
  const mask = q.mask === null || q.mask === '' ? null : parseMask(q.mask);
  const trim = (j: JsonObject): Json => (mask === null ? j : applyMask(j, mask));

  if (q.resource !== null && q.resource !== '') {
    const field = RESOURCE_FIELDS.get(q.resource);
    if (field === undefined) return { status: 404, message: `${q.resource} not found in config dump` };
    const elements = configs.get(field.config)?.fields[q.resource] ?? [];
    return { status: 200, body: { configs: elements.map((e) => trim({ '@type': ADMIN + field.element, ...e })) } };
  }

  const out: Json[] = [];
  for (const [name, c] of configs) {
    if (name === 'EndpointsConfigDump' && !q.includeEds) continue;
    const body: JsonObject = { '@type': ADMIN + name, ...(c.version ? { version_info: c.version } : {}) };
    for (const [k, list] of Object.entries(c.fields)) if (list.length > 0) body[k] = list;
    out.push(trim(body));
  }
  return { status: 200, body: { configs: out } };
}
