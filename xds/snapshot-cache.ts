// Per-node compiled snapshots (compiler output plus proxyless gRPC resources), resource selection and content versions.
import { createHash } from 'node:crypto';
import { MESSAGE_NAMES, TYPE_URLS, anyField, encodeMessage } from '../src/config/protos.js';
import { clusterName, compileForNode, compileProxylessClusters, type NodeInfo } from './compiler.js';
import type { MeshConfig, ServiceConfig } from './mesh-config.js';
import { xdsTypeLabel, type XdsTypeLabel } from '../src/xds/type-labels.js';

/** The four resource types the control server serves, in the order a config change pushes them. */
// xDS spec, "Eventual consistency considerations": push CDS, then EDS, then LDS, then RDS, so that a
// resource never arrives before the resources it references (make before break).
export const SERVED_TYPES = [
  TYPE_URLS.Cluster,
  TYPE_URLS.ClusterLoadAssignment,
  TYPE_URLS.Listener,
  TYPE_URLS.RouteConfiguration,
] as const;
export type ServedType = (typeof SERVED_TYPES)[number];

export function isServedType(typeUrl: string): typeUrl is ServedType {
  return (SERVED_TYPES as readonly string[]).includes(typeUrl);
}

/** The type's label in metrics and /proxies: the same table as the proxy's (src/xds/type-labels.ts). */
export function typeLabel(typeUrl: ServedType): XdsTypeLabel {
  return xdsTypeLabel(typeUrl)!;
}

export interface SnapshotResource {
  readonly name: string;
  readonly value: Uint8Array;
  /**
   * Only for proxyless gRPC clients (api_listener Listeners and their RouteConfigurations): left out of
   * wildcard subscriptions of sidecar nodes, whose translator rejects api_listener Listeners.
   */
  readonly proxylessOnly: boolean;
}

export interface NodeSnapshot {
  readonly node: NodeInfo;
  /** The node announced no service: a proxyless gRPC client rather than a sidecar. */
  readonly proxyless: boolean;
  readonly resources: ReadonlyMap<ServedType, readonly SnapshotResource[]>;
  readonly warnings: readonly string[];
  /** The mesh config's version (meshVersion): the version_info of every response compiled from this snapshot. */
  readonly version: string;
}

/** A subscription: the names asked for (sorted, unique), or '*' for wildcard. */
export type Subscription = readonly string[] | '*';

// ---- proxyless gRPC ------------------------------------------------------------------------------------

const ADS_SOURCE = { ads: {}, resource_api_version: 'V3' };

interface ProxylessResources {
  readonly listeners: readonly SnapshotResource[];
  readonly routes: readonly SnapshotResource[];
}

/** Alike for every node of a mesh: encoded once per MeshConfig. */
const proxylessByMesh = new WeakMap<MeshConfig, ProxylessResources>();

/**
 * A Listener `SERVICE.NAMESPACE:PORT` with an api_listener (gRFC A27: a gRPC client resolving
 * `xds:///NAME` asks LDS for NAME and reads an HttpConnectionManager from `api_listener`), routing via RDS
 * over ADS to a RouteConfiguration of the same name, whose virtual host sends everything to the cluster.
 */
function proxylessResources(mesh: MeshConfig): ProxylessResources {
  const cached = proxylessByMesh.get(mesh);
  if (cached !== undefined) return cached;
  const listeners: SnapshotResource[] = [];
  const routes: SnapshotResource[] = [];
  for (const s of mesh.services) {
    for (const port of s.ports) {
      if (port.protocol !== 'grpc') continue;
      const name = clusterName(s.name, s.namespace, port.port);
      listeners.push({
        name,
        proxylessOnly: true,
        value: encodeMessage(MESSAGE_NAMES.Listener, {
          name,
          api_listener: {
            api_listener: anyField(MESSAGE_NAMES.HttpConnectionManager, {
              stat_prefix: name,
              rds: { config_source: ADS_SOURCE, route_config_name: name },
              // gRFC A39: the router must be the last (here the only) HTTP filter.
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: anyField(MESSAGE_NAMES.Router, {}) }],
            }),
          },
        }),
      });
      routes.push({
        name,
        proxylessOnly: true,
        value: encodeMessage(MESSAGE_NAMES.RouteConfiguration, {
          name,
          virtual_hosts: [
            {
              name,
              // gRPC matches the virtual host on the target's authority, which is NAME itself; '*' also
              // catches clients that override the authority.
              domains: [name, '*'],
              routes: [{ name: `${name}/default`, match: { prefix: '/' }, route: { cluster: name, ...proxylessHashPolicy(s) } }],
            },
          ],
        }),
      });
    }
  }
  const result = { listeners, routes };
  proxylessByMesh.set(mesh, result);
  return result;
}

/**
 * The ring-hash key of a proxyless route (gRFC A42): gRPC hashes on a request header (a call's metadata) and
 * ignores cookie and source-IP hash policies, so only `hashOn: { header }` is sent. A call without the header
 * gets a random hash, as with no hash policy at all.
 */
function proxylessHashPolicy(s: ServiceConfig): { hash_policy?: unknown[] } {
  const lb = s.policy.loadBalancer;
  if (lb.policy !== 'ring_hash' || lb.hashOn === undefined || !('header' in lb.hashOn)) return {};
  return { hash_policy: [{ header: { header_name: lb.hashOn.header } }] };
}

/** Compile everything a node may ask for. Pure: the same mesh and node give the same bytes. */
export function buildNodeSnapshot(mesh: MeshConfig, node: NodeInfo): NodeSnapshot {
  const compiled = compileForNode(mesh, node);
  const proxyless = proxylessResources(mesh);
  // A proxyless client announces no service (its Node carries only an id); a sidecar always names its service.
  const isProxyless = node.service === '';
  const plain = (r: { name: string; value: Uint8Array }): SnapshotResource => ({ name: r.name, value: r.value, proxylessOnly: false });
  // A proxyless client's Clusters carry a balancing policy every gRPC implementation validates (gRPC C-core
  // NACKs a LEAST_REQUEST lb_policy); a service-less node has no inbound cluster, so these are all it needs.
  const clusters = isProxyless ? compileProxylessClusters(mesh) : compiled.clusters;
  const resources = new Map<ServedType, readonly SnapshotResource[]>([
    [TYPE_URLS.Listener, [...compiled.listeners.map(plain), ...proxyless.listeners]],
    [TYPE_URLS.RouteConfiguration, [...compiled.routes.map(plain), ...proxyless.routes]],
    [TYPE_URLS.Cluster, clusters.map(plain)],
    [TYPE_URLS.ClusterLoadAssignment, compiled.endpoints.map(plain)],
  ]);
  // The compiler warns that a service-less node gets no inbound config: expected for proxyless clients.
  const warnings = isProxyless ? [] : compiled.warnings;
  return { node, proxyless: isProxyless, resources, warnings, version: meshVersion(mesh) };
}

/**
 * The resources a subscription gets. xDS spec "How the client specifies what resources to return": an empty
 * resource_names list is a wildcard for LDS and CDS; like go-control-plane we read it as "all of that type"
 * for RDS and EDS too. Named subscriptions get exactly the named resources that exist (a SotW response for
 * LDS/CDS lists all of them; a missing name tells the client it does not exist). A wildcard leaves out
 * proxyless-only resources unless the node is a proxyless client: sidecars subscribe to LDS by wildcard
 * and must not receive api_listener Listeners, while proxyless gRPC clients always subscribe by name.
 */
export function selectResources(snapshot: NodeSnapshot, typeUrl: ServedType, subscription: Subscription): SnapshotResource[] {
  const all = snapshot.resources.get(typeUrl) ?? [];
  if (subscription === '*') return all.filter((r) => snapshot.proxyless || !r.proxylessOnly);
  const wanted = new Set(subscription);
  return all.filter((r) => wanted.has(r.name));
}

/**
 * Content hash of a set of resources: sha256 over the sorted names and bytes, first 16 hex chars. A stream sends
 * a type again only when this changes, so an edit pushes only what it changed, and a NACKed set is never resent.
 */
export function resourcesVersion(resources: readonly { name: string; value: Uint8Array }[]): string {
  const entries = resources.map((r) => entryOf(r.name, r.value));
  entries.sort();
  return createHash('sha256').update(entries.join('')).digest('hex').slice(0, 16);
}

/**
 * Per-resource "name + digest" entries, kept as long as the bytes live: every node shares most resources of a
 * compile, so each is hashed once. Entries start with the name, so sorting them sorts by name.
 */
const entryCache = new WeakMap<Uint8Array, { name: string; entry: string }>();

function entryOf(name: string, bytes: Uint8Array): string {
  const cached = entryCache.get(bytes);
  if (cached !== undefined && cached.name === name) return cached.entry;
  const entry = `${name}\u0000${createHash('sha256').update(bytes).digest('base64')}\u0000`;
  entryCache.set(bytes, { name, entry });
  return entry;
}

const meshVersions = new WeakMap<MeshConfig, string>();

/**
 * Version of a whole mesh config: the hash of its parsed form (a comment or a reformat changes nothing), first 16
 * hex chars. It is configVersion on /proxies and pillion_control_config_version_info, and the version_info of every
 * response compiled from it, so a proxy's ACKed versions name the config they came from; two control servers with
 * the same file give the same versions. Hashed once per config, not per node.
 */
export function meshVersion(mesh: MeshConfig): string {
  let v = meshVersions.get(mesh);
  if (v === undefined) {
    v = createHash('sha256').update(JSON.stringify(mesh)).digest('hex').slice(0, 16);
    meshVersions.set(mesh, v);
  }
  return v;
}

/** The identity that determines a node's compiled resources (two streams of one node share a snapshot). */
export function nodeKey(node: NodeInfo): string {
  return JSON.stringify([node.id, node.service, node.namespace, node.serviceAccount, node.appPort ?? null, node.inboundPort, node.outboundPort]);
}

/**
 * Snapshots of the nodes connected now, compiled once per node and recompiled together when the mesh
 * config changes; a snapshot is dropped when the last stream of its node goes.
 */
export class SnapshotCache {
  private readonly entries = new Map<string, { snapshot: NodeSnapshot; refs: number }>();

  constructor(private mesh: MeshConfig) {}

  get meshConfig(): MeshConfig {
    return this.mesh;
  }

  /** Take a reference to the node's snapshot, compiling it if no stream of this node holds one. */
  acquire(node: NodeInfo): { key: string; snapshot: NodeSnapshot } {
    const key = nodeKey(node);
    let entry = this.entries.get(key);
    if (!entry) this.entries.set(key, (entry = { snapshot: buildNodeSnapshot(this.mesh, node), refs: 0 }));
    entry.refs++;
    return { key, snapshot: entry.snapshot };
  }

  release(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    if (--entry.refs <= 0) this.entries.delete(key);
  }

  get(key: string): NodeSnapshot | undefined {
    return this.entries.get(key)?.snapshot;
  }

  /** Swap in a new mesh config and recompile every held node (each snapshot is replaced, never mutated). */
  setMesh(mesh: MeshConfig): void {
    this.mesh = mesh;
    for (const entry of this.entries.values()) entry.snapshot = buildNodeSnapshot(mesh, entry.snapshot.node);
  }

  get size(): number {
    return this.entries.size;
  }
}
