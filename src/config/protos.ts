// Loads our subset of Envoy's xDS v3 .proto files (proto/) once, and packs/unpacks google.protobuf.Any.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { unknownFieldPaths } from './unknown-fields.js';
import { notEnforced } from './values.js';

/**
 * The proto/ directory. This file runs as src/config/protos.ts (vitest) and as dist/src/config/protos.js (tsc
 * output), so walk up until a directory holding proto/envoy appears instead of assuming a fixed depth.
 */
export const PROTO_DIR: string = findProtoDir(dirname(fileURLToPath(import.meta.url)));

function findProtoDir(start: string): string {
  let dir = start;
  for (;;) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'envoy'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`proto/envoy not found in any parent of ${start}`);
    dir = parent;
  }
}

const PREFIX = 'type.googleapis.com/';

/** Type URLs of the resources and typed configs Pillion reads and writes. */
export const TYPE_URLS = {
  Listener: `${PREFIX}envoy.config.listener.v3.Listener`,
  RouteConfiguration: `${PREFIX}envoy.config.route.v3.RouteConfiguration`,
  Cluster: `${PREFIX}envoy.config.cluster.v3.Cluster`,
  ClusterLoadAssignment: `${PREFIX}envoy.config.endpoint.v3.ClusterLoadAssignment`,
  HttpConnectionManager: `${PREFIX}envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`,
  TcpProxy: `${PREFIX}envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy`,
  HttpProtocolOptions: `${PREFIX}envoy.extensions.upstreams.http.v3.HttpProtocolOptions`,
  Router: `${PREFIX}envoy.extensions.filters.http.router.v3.Router`,
  HTTPFault: `${PREFIX}envoy.extensions.filters.http.fault.v3.HTTPFault`,
  LocalRateLimit: `${PREFIX}envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit`,
  HttpRBAC: `${PREFIX}envoy.extensions.filters.http.rbac.v3.RBAC`,
  NetworkRBAC: `${PREFIX}envoy.extensions.filters.network.rbac.v3.RBAC`,
  JwtAuthentication: `${PREFIX}envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication`,
  Secret: `${PREFIX}envoy.extensions.transport_sockets.tls.v3.Secret`,
  UpstreamTlsContext: `${PREFIX}envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`,
  DownstreamTlsContext: `${PREFIX}envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`,
} as const;

/** Full message names, for encodeMessage/decodeMessage. */
export const MESSAGE_NAMES = {
  Listener: 'envoy.config.listener.v3.Listener',
  RouteConfiguration: 'envoy.config.route.v3.RouteConfiguration',
  Cluster: 'envoy.config.cluster.v3.Cluster',
  ClusterLoadAssignment: 'envoy.config.endpoint.v3.ClusterLoadAssignment',
  HttpConnectionManager: 'envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  TcpProxy: 'envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  HttpProtocolOptions: 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  Router: 'envoy.extensions.filters.http.router.v3.Router',
  HTTPFault: 'envoy.extensions.filters.http.fault.v3.HTTPFault',
  LocalRateLimit: 'envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit',
  HttpRBAC: 'envoy.extensions.filters.http.rbac.v3.RBAC',
  NetworkRBAC: 'envoy.extensions.filters.network.rbac.v3.RBAC',
  JwtAuthentication: 'envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication',
  Secret: 'envoy.extensions.transport_sockets.tls.v3.Secret',
  UpstreamTlsContext: 'envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
  DownstreamTlsContext: 'envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
  Node: 'envoy.config.core.v3.Node',
  DiscoveryRequest: 'envoy.service.discovery.v3.DiscoveryRequest',
  DiscoveryResponse: 'envoy.service.discovery.v3.DiscoveryResponse',
} as const;

/** Every .proto under PROTO_DIR, relative to it (what @grpc/proto-loader wants with includeDirs: [PROTO_DIR]). */
export function protoFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.proto')) out.push(relative(PROTO_DIR, full).split(sep).join('/'));
    }
  };
  walk(PROTO_DIR);
  return out.sort();
}

let root: protobuf.Root | undefined;

/**
 * The protobufjs Root with every message of proto/. Field names keep the .proto's snake_case (`connect_timeout`),
 * as grpc-js-xds does: protobufjs serves google/protobuf/* from bundled descriptors whose Any field is `type_url`
 * whatever the case option, so snake_case is the only shape that is the same everywhere. Hence proto/ carries no
 * google/protobuf files.
 */
export function protoRoot(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => join(PROTO_DIR, target);
  r.loadSync(protoFiles(), { keepCase: true });
  r.resolveAll();
  root = r;
  return r;
}

/** The message type `name` (fully qualified, with or without a leading dot). */
export function messageType(name: string): protobuf.Type {
  return protoRoot().lookupType(name.startsWith('.') ? name.slice(1) : name);
}

/** A packed google.protobuf.Any as encodeAny returns it. */
export interface AnyMessage {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

/** A google.protobuf.Any as it appears inside a decoded message (and as fromObject wants it). */
export interface AnyField {
  readonly type_url: string;
  readonly value: Uint8Array;
}

/**
 * Options for toObject: enums as their names, 64-bit ints as numbers, unset fields absent (so "unset" and
 * "zero" stay distinguishable for wrapper types), and the name of the set member of each oneof.
 */
export const DECODE_OPTIONS: protobuf.IConversionOptions = {
  enums: String,
  longs: Number,
  defaults: false,
  oneofs: true,
};

/** Encode a plain object as message `typeName`; throws if the object does not fit the message. */
export function encodeMessage(typeName: string, plain: object): Uint8Array {
  const type = messageType(typeName);
  return type.encode(type.fromObject(plain as Record<string, unknown>)).finish();
}

/**
 * Decode bytes as message `typeName` into a plain object. Unknown fields are skipped, as proto3 says, and each
 * is named in a translation warning (src/config/values.ts), so config Pillion does not read is never taken silently.
 */
export function decodeMessage<T = Record<string, unknown>>(typeName: string, bytes: Uint8Array): T {
  return decodeAs<T>(messageType(typeName), bytes);
}

function decodeAs<T>(type: protobuf.Type, bytes: Uint8Array): T {
  const decoded = type.toObject(type.decode(bytes), DECODE_OPTIONS) as T;
  for (const path of unknownFieldPaths(type, bytes)) {
    notEnforced(`${type.fullName.slice(1)}: ${path}`, 'a field this version of Pillion does not know; ignored');
  }
  return decoded;
}

/** Pack a plain object as an Any of message `typeName` (e.g. 'envoy.config.cluster.v3.Cluster'). */
export function encodeAny(typeName: string, plain: object): AnyMessage {
  const name = typeName.startsWith(PREFIX) ? typeName.slice(PREFIX.length) : typeName;
  return { typeUrl: PREFIX + name, value: encodeMessage(name, plain) };
}

/** Pack a plain object as an Any field to embed in another message (`typed_config`, `api_listener`, ...). */
export function anyField(typeName: string, plain: object): AnyField {
  const { typeUrl, value } = encodeAny(typeName, plain);
  return { type_url: typeUrl, value };
}

/**
 * Unpack an Any (either shape: encodeAny's `typeUrl` or an embedded field's `type_url`) into a plain object;
 * throws on an unknown type URL or bytes that do not decode.
 */
export function decodeAny<T = Record<string, unknown>>(
  any: { typeUrl?: string; type_url?: string; value?: Uint8Array },
): T {
  const url = any.typeUrl ?? any.type_url ?? '';
  const name = url.slice(url.lastIndexOf('/') + 1);
  if (!name) throw new Error('Any has no type_url');
  let type: protobuf.Type;
  try {
    type = messageType(name);
  } catch {
    throw new Error(`unsupported type ${url}`);
  }
  return decodeAs<T>(type, any.value ?? new Uint8Array());
}
