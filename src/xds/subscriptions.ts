// The ADS client's pure state (no sockets, no timers): per resource type the names subscribed, the last ACKed
// version, the last nonce and the last good resources; decides ACK/NACK, builds each DiscoveryRequest and what to
// subscribe next (RDS names from listeners, EDS names from clusters), and says when the first config is warm.
//
// Protocol rules followed (xDS REST/gRPC protocol, "state of the world" variant):
// - version_info of a request is the last version the client ACCEPTED for that type ('' before any); an ACK
//   carries the new version, a NACK keeps the previous one and adds error_detail.
// - response_nonce is the nonce of the last response of that type received ON THIS STREAM; nonces do not survive
//   a reconnect, versions do (so the server can skip sending what the client already has).
// - Listener and Cluster are wildcard types and their responses carry the complete set; RouteConfiguration and
//   ClusterLoadAssignment are subscribed by name, a response may carry only some of them (the others keep their
//   last value), and a name is dropped by sending the new list. An empty list is a wildcard only on the first
//   request of a type on a stream, so a non-wildcard type with no names is not re-requested after a reconnect.
import protobuf from 'protobufjs';
import { translateCluster } from '../config/cluster.js';
import { translateListener } from '../config/listener.js';
import { TYPE_URLS } from '../config/protos.js';
import type { RawResource, ResourceError, ResourceSet } from '../config/snapshot.js';
import type { TlsContextModel } from '../config/model.js';

export type ResourceKind = 'listeners' | 'routes' | 'clusters' | 'endpoints' | 'secrets';

/**
 * A NACK's error_detail names every rejected resource; with thousands of them it could pass the control
 * server's 4 MiB message limit, and the stream would be cut and reconnect in a loop. 8 KiB tells an operator
 * what is wrong; the proxy's own log has each error.
 */
const MAX_NACK_DETAIL_CHARS = 8192;

function boundedDetail(message: string): string {
  if (message.length <= MAX_NACK_DETAIL_CHARS) return message;
  return `${message.slice(0, MAX_NACK_DETAIL_CHARS)}… (${message.length - MAX_NACK_DETAIL_CHARS} more characters)`;
}

/** google.rpc.Code INVALID_ARGUMENT: what Envoy puts in a NACK's error_detail. */
export const INVALID_ARGUMENT = 3;

export const KIND_TYPE_URLS: Readonly<Record<ResourceKind, string>> = {
  listeners: TYPE_URLS.Listener,
  routes: TYPE_URLS.RouteConfiguration,
  clusters: TYPE_URLS.Cluster,
  endpoints: TYPE_URLS.ClusterLoadAssignment,
  secrets: TYPE_URLS.Secret,
};

/**
 * Request order on a new stream, as Envoy's: CDS before EDS before LDS before RDS, so by the time listeners and
 * routes arrive the clusters they name are known (fewer no_cluster replies while warming).
 */
const ORDER: readonly ResourceKind[] = ['clusters', 'endpoints', 'listeners', 'routes', 'secrets'];
const WILDCARD: ReadonlySet<ResourceKind> = new Set(['listeners', 'clusters']);

export function kindOfTypeUrl(typeUrl: string): ResourceKind | undefined {
  return ORDER.find((k) => KIND_TYPE_URLS[k] === typeUrl);
}

/** A DiscoveryRequest without the Node (the I/O shell adds the Node to the first request of a stream). */
export interface XdsRequest {
  readonly typeUrl: string;
  readonly versionInfo: string;
  readonly resourceNames: readonly string[];
  readonly responseNonce: string;
  readonly errorDetail?: { readonly code: number; readonly message: string };
}

/** A DiscoveryResponse as the shell decoded it; resources are the packed Anys. */
export interface XdsResponse {
  readonly typeUrl: string;
  readonly versionInfo: string;
  readonly nonce: string;
  readonly resources: readonly { readonly typeUrl: string; readonly value: Uint8Array }[];
}

/** A response turned into a candidate config: apply `resources`, then hand the outcome to settle(). */
export interface Pending {
  readonly kind: ResourceKind;
  readonly typeUrl: string;
  readonly version: string;
  readonly nonce: string;
  /** The new resources of this type (for RDS/EDS merged with the ones the response left out). */
  readonly list: readonly RawResource[];
  /** This type's new list plus the last good resources of the other types. */
  readonly resources: ResourceSet;
  /** Names the response carried that nobody subscribed to (RDS/EDS): left out, as Envoy does. */
  readonly unrequested: readonly string[];
}

/** What the proxy said about a candidate: its ApplyResult, or the message of an exception apply threw. */
export type ApplyOutcome = { readonly applied: boolean; readonly errors: readonly ResourceError[] } | { readonly thrown: string };

export interface Verdict {
  readonly kind: ResourceKind;
  readonly ack: boolean;
  /** The version now ACKed for this type (for a NACK: the previous one, still served). */
  readonly version: string;
  /** The rejected version and why (NACK only). */
  readonly rejectedVersion?: string;
  readonly message?: string;
  /** To send in order: the ACK or NACK, then subscription changes it caused (new RDS or EDS names). */
  readonly requests: readonly XdsRequest[];
}

interface TypeState {
  names: readonly string[];
  version: string;
  nonce: string;
  good: readonly RawResource[];
  /** A response of this type has been accepted (since the client was created, not per stream). */
  accepted: boolean;
}

/** Per-type versions; `secrets` only once a server has sent Secrets. */
export type TypeVersions = Record<Exclude<ResourceKind, 'secrets'>, string> & { secrets?: string };

export class SubscriptionState {
  private readonly types = new Map<ResourceKind, TypeState>(
    ORDER.map((k) => [k, { names: [], version: '', nonce: '', good: [], accepted: false }]),
  );
  private warm = false;
  private readonly edsNames = new Map<string, { bytes: Uint8Array; eds: string | undefined }>();
  private readonly sdsSeen = new Map<string, { bytes: Uint8Array; names: readonly string[] }>();

  /**
   * A new stream: forget nonces (they belong to the old stream) and return the requests that (re)subscribe every
   * type with interest, each with its last ACKed version so the server can tell what the client already has.
   */
  streamStarted(): XdsRequest[] {
    const out: XdsRequest[] = [];
    for (const kind of ORDER) {
      const s = this.get(kind);
      s.nonce = '';
      if (WILDCARD.has(kind) || s.names.length > 0) out.push(this.request(kind));
    }
    return out;
  }

  /** Turn a response into a candidate config, or say why it is ignored (a type this client never asked for). */
  prepare(response: XdsResponse): Pending | { readonly ignore: string } {
    const kind = kindOfTypeUrl(response.typeUrl);
    if (kind === undefined) return { ignore: `unsupported type ${response.typeUrl}` };
    const s = this.get(kind);
    // The nonce is recorded whatever becomes of the response: the next request of this type must carry it.
    s.nonce = response.nonce;
    // After an unsubscribe-all, a server reading the empty list as the legacy wildcard may send every resource.
    if (!WILDCARD.has(kind) && s.names.length === 0) return { ignore: `no subscription for ${kind}` };
    let list: RawResource[] = response.resources.map((r) => ({ name: resourceName(r.value), typeUrl: r.typeUrl, value: r.value }));
    const unrequested: string[] = [];
    if (!WILDCARD.has(kind)) {
      const wanted = new Set(s.names);
      const fresh = list.filter((r) => {
        // A resource without a readable name is kept: the translator names what is wrong with it (→ NACK).
        if (r.name === '' || wanted.has(r.name)) return true;
        unrequested.push(r.name);
        return false;
      });
      const sent = new Set(fresh.map((r) => r.name));
      list = [...s.good.filter((r) => wanted.has(r.name) && !sent.has(r.name)), ...fresh];
    }
    return {
      kind,
      typeUrl: response.typeUrl,
      version: response.versionInfo,
      nonce: response.nonce,
      list,
      resources: { ...this.lastGood(), [kind]: list },
      unrequested,
    };
  }

  /**
   * Record how the proxy took a candidate. Errors of this type (or any failure to apply: the proxy keeps the last
   * good snapshot then, so "last good" must stay what it actually serves) → NACK; otherwise → ACK, and if the
   * accepted listeners or clusters now name other RouteConfigurations or ClusterLoadAssignments, a request with
   * the new names follows.
   */
  settle(pending: Pending, outcome: ApplyOutcome): Verdict {
    const s = this.get(pending.kind);
    let message: string | undefined;
    if ('thrown' in outcome) message = outcome.thrown;
    else if (!outcome.applied || outcome.errors.length > 0) {
      const own = outcome.errors.filter((e) => e.typeUrl === pending.typeUrl);
      const shown = own.length > 0 ? own : outcome.errors;
      message = shown.length > 0 ? shown.map((e) => `${e.name || '(unnamed)'}: ${e.message}`).join('; ') : 'rejected by the proxy';
    }
    if (message !== undefined) {
      message = boundedDetail(message);
      const nack: XdsRequest = { ...this.request(pending.kind), errorDetail: { code: INVALID_ARGUMENT, message } };
      return { kind: pending.kind, ack: false, version: s.version, rejectedVersion: pending.version, message, requests: [nack] };
    }
    s.version = pending.version;
    s.good = pending.list;
    s.accepted = true;
    const requests: XdsRequest[] = [this.request(pending.kind)];
    if (pending.kind === 'listeners') this.resubscribe('routes', routeNamesOf(pending.list), requests);
    if (pending.kind === 'clusters') this.resubscribe('endpoints', edsNamesOf(pending.list, this.edsNames), requests);
    // SDS: the secrets named by accepted listeners and clusters. Not part of warming: a control server that
    // does not serve Secrets (ours: the proxy's certificate client fills the store) must not hold readiness.
    if (pending.kind === 'listeners' || pending.kind === 'clusters') {
      this.resubscribe('secrets', sdsNamesOf(this.get('listeners').good, this.get('clusters').good, this.sdsSeen), requests);
    }
    this.updateWarm();
    return { kind: pending.kind, ack: true, version: s.version, requests };
  }

  /**
   * True once the first config is warm (Envoy's initialization: listeners and clusters received, and every
   * RouteConfiguration and ClusterLoadAssignment they reference received too). Stays true afterwards: later
   * updates warm per listener (a new route name answers no_route until it arrives), the proxy stays ready.
   */
  isWarm(): boolean {
    return this.warm;
  }

  /** The last ACKed version of each type ('' before the first), as Envoy's config_dump shows version_info. */
  versions(): TypeVersions {
    const secrets = this.get('secrets').version;
    return {
      listeners: this.get('listeners').version,
      routes: this.get('routes').version,
      clusters: this.get('clusters').version,
      endpoints: this.get('endpoints').version,
      // Only once a server has sent Secrets: most control servers (ours) never do.
      ...(secrets === '' ? {} : { secrets }),
    };
  }

  /** Listeners and clusters accepted: only route tables or endpoint sets they name may still be missing. */
  coreAccepted(): boolean {
    return this.get('listeners').accepted && this.get('clusters').accepted;
  }

  /** Subscribed route and endpoint names that no accepted response has carried yet. */
  missing(): string[] {
    const out: string[] = [];
    for (const kind of ['routes', 'endpoints'] as const) {
      const s = this.get(kind);
      const got = new Set(s.good.map((r) => r.name));
      for (const n of s.names) if (!got.has(n)) out.push(`${kind}/${n}`);
    }
    return out;
  }

  /** Names currently subscribed for a non-wildcard type ([] for wildcard types). */
  names(kind: ResourceKind): readonly string[] {
    return this.get(kind).names;
  }

  version(kind: ResourceKind): string {
    return this.get(kind).version;
  }

  nonce(kind: ResourceKind): string {
    return this.get(kind).nonce;
  }

  /** The last accepted resources of every type: what the proxy is serving. */
  lastGood(): ResourceSet {
    return {
      listeners: this.get('listeners').good,
      routes: this.get('routes').good,
      clusters: this.get('clusters').good,
      endpoints: this.get('endpoints').good,
      secrets: this.get('secrets').good,
    };
  }

  private resubscribe(kind: ResourceKind, names: string[], out: XdsRequest[]): void {
    const s = this.get(kind);
    if (sameNames(s.names, names)) return;
    s.names = names;
    // Names no longer wanted are dropped now, so they neither count for warming nor come back in a candidate.
    const keep = new Set(names);
    s.good = s.good.filter((r) => keep.has(r.name));
    out.push(this.request(kind));
  }

  private updateWarm(): void {
    if (this.warm) return;
    const has = (kind: ResourceKind): boolean => {
      const s = this.get(kind);
      const got = new Set(s.good.map((r) => r.name));
      return s.names.every((n) => got.has(n));
    };
    this.warm = this.get('listeners').accepted && this.get('clusters').accepted && has('routes') && has('endpoints');
  }

  private request(kind: ResourceKind): XdsRequest {
    const s = this.get(kind);
    return { typeUrl: KIND_TYPE_URLS[kind], versionInfo: s.version, resourceNames: WILDCARD.has(kind) ? [] : s.names, responseNonce: s.nonce };
  }

  private get(kind: ResourceKind): TypeState {
    return this.types.get(kind)!;
  }
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

/** RDS names of HTTP chains that use `rds` (an inline route_config needs no subscription). Sorted, unique. */
export function routeNamesOf(listeners: readonly RawResource[]): string[] {
  const names = new Set<string>();
  for (const r of listeners) {
    try {
      const t = translateListener(r.value);
      if (t.model.http !== undefined && !t.inlineRoutes.some((rc) => rc.name === t.model.http!.routeConfigName)) {
        names.add(t.model.http.routeConfigName);
      }
    } catch {
      // Only accepted (hence valid) listeners get here.
    }
  }
  return [...names].sort();
}

/**
 * ClusterLoadAssignment names of EDS clusters. Sorted, unique. `seen` remembers each cluster's answer by its
 * bytes, so a CDS update decodes only the clusters that changed.
 */
export function edsNamesOf(clusters: readonly RawResource[], seen?: Map<string, { bytes: Uint8Array; eds: string | undefined }>): string[] {
  const names = new Set<string>();
  for (const r of clusters) {
    let eds: string | undefined;
    const hit = seen?.get(r.name);
    if (hit !== undefined && Buffer.compare(hit.bytes, r.value) === 0) {
      eds = hit.eds;
    } else {
      try {
        eds = translateCluster(r.value).edsServiceName;
      } catch {
        // Only accepted (hence valid) clusters get here.
      }
      seen?.set(r.name, { bytes: r.value, eds });
    }
    if (eds !== undefined) names.add(eds);
  }
  if (seen !== undefined && seen.size > clusters.length) {
    const current = new Set(clusters.map((r) => r.name));
    for (const name of seen.keys()) if (!current.has(name)) seen.delete(name);
  }
  return [...names].sort();
}

/** SDS secret names the listeners' and clusters' transport sockets name. Sorted, unique. */
export function sdsNamesOf(
  listeners: readonly RawResource[],
  clusters: readonly RawResource[],
  seen: Map<string, { bytes: Uint8Array; names: readonly string[] }> = new Map(),
): string[] {
  const names = new Set<string>();
  const current = new Set<string>();
  const visit = (r: RawResource, contextOf: (bytes: Uint8Array) => TlsContextModel | undefined): void => {
    const key = `${r.typeUrl} ${r.name}`;
    current.add(key);
    let hit = seen.get(key);
    // An update re-reads only the resources whose bytes changed (a CDS update may carry thousands).
    if (hit === undefined || Buffer.compare(hit.bytes, r.value) !== 0) {
      const found: string[] = [];
      try {
        const context = contextOf(r.value);
        if (context?.certificate?.kind === 'sds') found.push(context.certificate.name);
        if (context?.validation?.kind === 'sds') found.push(context.validation.name);
      } catch {
        // Only accepted (hence valid) resources get here.
      }
      hit = { bytes: r.value, names: found };
      seen.set(key, hit);
    }
    for (const n of hit.names) names.add(n);
  };
  for (const r of listeners) visit(r, (b) => translateListener(b).model.tls?.context);
  for (const r of clusters) visit(r, (b) => translateCluster(b).model.tls?.context);
  for (const key of seen.keys()) if (!current.has(key)) seen.delete(key);
  return [...names].sort();
}

/**
 * The resource's name without decoding all of it: field 1 is `name` in Listener, RouteConfiguration and Cluster
 * and `cluster_name` in ClusterLoadAssignment. '' if the bytes do not parse (the translator reports why).
 */
export function resourceName(value: Uint8Array): string {
  try {
    const reader = protobuf.Reader.create(value);
    let name = '';
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      // Last one wins for a repeated scalar field, as protobuf parsers do.
      if (tag >>> 3 === 1 && (tag & 7) === 2) name = reader.string();
      else reader.skipType(tag & 7);
    }
    return name;
  } catch {
    return '';
  }
}
