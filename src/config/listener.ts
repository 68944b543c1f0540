// Translates an xDS Listener (HttpConnectionManager and/or TcpProxy chains) into the internal ListenerModel.
import { DEFAULTS, type Direction, type DownstreamTlsModel, type HttpChainModel, type ListenerModel, type RouteConfigModel, type TcpChainModel } from './model.js';
import { decodeAny, decodeMessage, MESSAGE_NAMES, TYPE_URLS } from './protos.js';
import { httpFilters } from './http-filters.js';
import { networkRbacFilters } from './rbac.js';
import { downstreamTls } from './transport-socket.js';
import { routeConfigFromPlain } from './route-config.js';
import { durationMs, invalid, notEnforced, socketAddress, wrapped, type Plain } from './values.js';

export interface ListenerTranslation {
  readonly model: ListenerModel;
  /** RouteConfigurations carried inline by an HttpConnectionManager (they join the snapshot's routeConfigs). */
  readonly inlineRoutes: readonly RouteConfigModel[];
}

function httpChain(filter: Plain, field: string, inline: RouteConfigModel[]): HttpChainModel {
  const hcm = decodeAny<Plain>(filter.typed_config);
  let routeConfigName: string;
  if (hcm.rds) {
    if (!hcm.rds.route_config_name) invalid(`${field}.rds.route_config_name: missing`);
    routeConfigName = String(hcm.rds.route_config_name);
  } else if (hcm.route_config) {
    const rc = routeConfigFromPlain(hcm.route_config, `${field}.route_config`);
    inline.push(rc);
    routeConfigName = rc.name;
  } else {
    return invalid(`${field}: no route_config or rds (scoped_routes is not supported)`);
  }
  const filters = httpFilters(hcm.http_filters ?? [], `${field}.http_filters`);
  const codec = hcm.codec_type ?? 'AUTO';
  if (codec !== 'AUTO' && codec !== 'HTTP1' && codec !== 'HTTP2') invalid(`${field}.codec_type: ${codec} is not supported`);
  return {
    statPrefix: String(hcm.stat_prefix ?? ''),
    routeConfigName,
    codec: codec === 'AUTO' ? 'auto' : codec === 'HTTP1' ? 'http1' : 'http2',
    requestTimeoutMs: durationMs(hcm.request_timeout, 0, `${field}.request_timeout`),
    // Envoy's stream_idle_timeout default is 5 minutes.
    streamIdleTimeoutMs: streamIdleTimeout(hcm.stream_idle_timeout, `${field}.stream_idle_timeout`),
    // Envoy's downstream connection idle_timeout default is 1 hour.
    idleTimeoutMs: durationMs(hcm.common_http_protocol_options?.idle_timeout, 3_600_000, `${field}.common_http_protocol_options.idle_timeout`),
    maxRequestHeadersKb: maxRequestHeadersKb(hcm.max_request_headers_kb, `${field}.max_request_headers_kb`),
    requestHeadersTimeoutMs: durationMs(hcm.request_headers_timeout, DEFAULTS.requestHeadersTimeoutMs, `${field}.request_headers_timeout`),
    maxConcurrentStreams: maxConcurrentStreams(hcm.http2_protocol_options, `${field}.http2_protocol_options.max_concurrent_streams`),
    maxHeadersCount: maxHeadersCount(hcm.common_http_protocol_options, `${field}.common_http_protocol_options.max_headers_count`),
    generateRequestId: wrapped<boolean>(hcm.generate_request_id, true),
    httpFilters: filters,
  };
}

/**
 * Envoy's proto rule: 1..8192 KiB. The value reaches Node APIs that throw outside their range: HTTP/2's
 * SETTINGS_MAX_HEADER_LIST_SIZE (kb × 1024, a uint32: from 4,194,304 KiB the first HTTP/2 connection threw
 * ERR_HTTP2_INVALID_SETTING_VALUE, uncaught) and llhttp's max header size.
 */
function maxRequestHeadersKb(w: Plain | undefined, field: string): number {
  const kb = wrapped<number>(w, DEFAULTS.maxRequestHeadersKb);
  if (!Number.isInteger(kb) || kb < 1 || kb > 8192) invalid(`${field}: ${kb} is not in 1..8192 (KiB)`);
  return kb;
}

/** Envoy's default is 5 minutes; 0 turns it off. */
function streamIdleTimeout(d: Plain | undefined, field: string): number {
  return durationMs(d, 300_000, field);
}

function maxHeadersCount(options: Plain | undefined, field: string): number {
  const n = wrapped<number>(options?.max_headers_count, DEFAULTS.maxHeadersCount);
  // Envoy's proto rule: at least 1. Above 10,000 a head would pass the size limit long before the count.
  if (n < 1 || n > 10_000) invalid(`${field}: ${n} is not in 1..10000`);
  return n;
}

function maxConcurrentStreams(options: Plain | undefined, field: string): number {
  const n = wrapped<number>(options?.max_concurrent_streams, DEFAULTS.maxConcurrentStreams);
  // Envoy's proto rule: 1 .. 2^31-1 (within the uint32 SETTINGS_MAX_CONCURRENT_STREAMS Node accepts).
  if (!Number.isInteger(n) || n < 1 || n > 2_147_483_647) invalid(`${field}: ${n} is not in 1..2147483647`);
  return n;
}

function tcpChain(filter: Plain, field: string, chain: Plain, chainField: string): TcpChainModel {
  const tp = decodeAny<Plain>(filter.typed_config);
  let cluster: string | undefined = tp.cluster;
  if (!cluster && tp.weighted_clusters) {
    // One cluster is all the TCP model holds: take the heaviest so a 100/0 split still works.
    const list: Plain[] = [...(tp.weighted_clusters.clusters ?? [])].sort((a, b) => (b.weight ?? 0) - (a.weight ?? 0));
    if (list.length > 1 && (list[1]!.weight ?? 0) > 0) invalid(`${field}.weighted_clusters: splitting TCP traffic is not supported`);
    cluster = list[0]?.name;
  }
  if (!cluster) invalid(`${field}.cluster: missing`);
  return {
    statPrefix: String(tp.stat_prefix ?? ''),
    cluster,
    idleTimeoutMs: durationMs(tp.idle_timeout, DEFAULTS.tcpIdleTimeoutMs, `${field}.idle_timeout`),
    ...networkRbacFilters(chain.filters ?? [], `${chainField}.filters`),
  };
}

function typeOf(filter: Plain): string {
  return String(filter.typed_config?.type_url ?? '');
}

/** The terminal filter of a chain, as `http` or `tcp`; other network filters are rejected. */
function chainKind(chain: Plain, field: string): { kind: 'http' | 'tcp'; filter: Plain; field: string } {
  const filters: Plain[] = chain.filters ?? [];
  if (filters.length === 0) invalid(`${field}.filters: empty`);
  const f = filters[filters.length - 1]!;
  const ff = `${field}.filters[${filters.length - 1}]`;
  const t = typeOf(f);
  // Network RBAC may stand before a tcp_proxy (translated with it); nothing else before the terminal filter.
  filters.forEach((g, i) => {
    if (i === filters.length - 1 || (t === TYPE_URLS.TcpProxy && typeOf(g) === TYPE_URLS.NetworkRBAC)) return;
    invalid(`${field}.filters[${i}]: unsupported filter ${g.name || typeOf(g)} (only envoy.filters.network.rbac before a tcp_proxy, and one terminal filter per chain)`);
  });
  if (!f.typed_config) invalid(`${ff}.typed_config: missing`);
  if (t === TYPE_URLS.HttpConnectionManager) return { kind: 'http', filter: f, field: `${ff}.typed_config` };
  if (t === TYPE_URLS.TcpProxy) return { kind: 'tcp', filter: f, field: `${ff}.typed_config` };
  return invalid(`${ff}: unsupported filter ${f.name || '?'} (${t || 'no typed_config'})`);
}

interface ChainRef {
  readonly chain: Plain;
  readonly field: string;
}

/**
 * Chains are chosen by transport and protocol only: a chain meant for some ports or server names serves every
 * connection of its kind, so those criteria are said to be ignored.
 */
function unmatchedCriteria({ chain, field }: ChainRef): void {
  const m = chain.filter_chain_match;
  if (m === undefined || m === null) return;
  if (m.destination_port !== undefined && m.destination_port !== null) notEnforced(`${field}.filter_chain_match.destination_port`, 'the chain serves every port');
  if ((m.source_ports ?? []).length > 0) notEnforced(`${field}.filter_chain_match.source_ports`, 'the chain serves every source port');
  if ((m.server_names ?? []).length > 0) notEnforced(`${field}.filter_chain_match.server_names`, 'the chain serves every server name');
}

/**
 * Splits the chains by transport: those with a TLS transport_socket (filter_chain_match transport_protocol
 * "tls") and those without ("raw_buffer" or unset). With TLS chains, they are the ones served and the plaintext
 * chains only say that plaintext is accepted too (PERMISSIVE); without, every chain is plaintext.
 */
function transportGroups(chains: readonly ChainRef[]): { tls: DownstreamTlsModel | undefined; primary: ChainRef[]; secondary: ChainRef[] } {
  const tlsChains: ChainRef[] = [];
  const plain: ChainRef[] = [];
  let tls: Omit<DownstreamTlsModel, 'plaintext'> | undefined;
  let tlsJson = '';
  for (const ref of chains) {
    unmatchedCriteria(ref);
    const proto = String(ref.chain.filter_chain_match?.transport_protocol ?? '');
    const t = downstreamTls(ref.chain.transport_socket, `${ref.field}.transport_socket`);
    if (t === undefined) {
      if (proto === 'tls') invalid(`${ref.field}.filter_chain_match.transport_protocol: "tls" needs a TLS transport_socket (TLS passthrough is not supported)`);
      plain.push(ref);
      continue;
    }
    if (proto !== '' && proto !== 'tls') invalid(`${ref.field}.filter_chain_match.transport_protocol: "${proto}" with a TLS transport_socket`);
    const json = JSON.stringify(t);
    if (tls !== undefined && json !== tlsJson) invalid(`${ref.field}.transport_socket: TLS chains with different TLS contexts are not supported`);
    tls = t;
    tlsJson = json;
    tlsChains.push(ref);
  }
  if (tls === undefined) return { tls: undefined, primary: plain, secondary: [] };
  return { tls: { ...tls, plaintext: plain.length > 0 }, primary: tlsChains, secondary: plain };
}

/**
 * Listener filters whose work the listener does itself: TLS and HTTP are told apart by their first bytes, and
 * use_original_dst reads the original destination. Any other (proxy_protocol, ...) would be skipped unsaid.
 */
const BUILT_IN_LISTENER_FILTERS: ReadonlySet<string> = new Set(['tls_inspector', 'http_inspector', 'original_dst']);

function listenerFilters(filters: readonly Plain[]): void {
  filters.forEach((f, i) => {
    const name = String(f.name ?? '');
    const short = name.replace(/^envoy\.filters\.listener\./, '');
    if (!BUILT_IN_LISTENER_FILTERS.has(short)) notEnforced(`listener_filters[${i}]: ${name || '(unnamed)'}`, 'connections do not pass through it');
  });
}

/** Decode and validate a Listener resource; throws ResourceInvalid with the field at fault. */
export function translateListener(bytes: Uint8Array): ListenerTranslation {
  const l = decodeMessage<Plain>(MESSAGE_NAMES.Listener, bytes);
  if (!l.name) invalid('name: missing');
  if (l.api_listener) invalid('api_listener: a sidecar binds sockets; api_listener is for proxyless clients');
  const { address, port } = socketAddress(l.address, 'address');
  const direction: Direction =
    l.traffic_direction === 'INBOUND' ? 'inbound' : l.traffic_direction === 'OUTBOUND' ? 'outbound'
      : String(l.name).startsWith('inbound') ? 'inbound' : 'outbound';

  const inlineRoutes: RouteConfigModel[] = [];
  let http: HttpChainModel | undefined;
  let tcp: TcpChainModel | undefined;
  const chains: { chain: Plain; field: string }[] = (l.filter_chains ?? []).map((chain: Plain, i: number) => ({
    chain,
    field: `filter_chains[${i}]`,
  }));
  if (l.default_filter_chain) chains.push({ chain: l.default_filter_chain, field: 'default_filter_chain' });
  if (chains.length === 0) invalid('filter_chains: empty and no default_filter_chain');
  const { tls, primary, secondary } = transportGroups(chains);
  for (const { chain, field } of primary) {
    const k = chainKind(chain, field);
    if (k.kind === 'http') {
      // More HTTP chains (e.g. split by server_names or ALPN) would need matching the model does not have.
      if (http) invalid(`${field}: more than one HttpConnectionManager chain is not supported`);
      http = httpChain(k.filter, k.field, inlineRoutes);
    } else {
      if (tcp) invalid(`${field}: more than one TcpProxy chain is not supported`);
      tcp = tcpChain(k.filter, k.field, chain, field);
    }
  }
  // PERMISSIVE: the plaintext chains must be the TLS ones without TLS; their filters are served by the TLS
  // chains' config (Istio sends the same filters on both).
  for (const { chain, field } of secondary) {
    const k = chainKind(chain, field);
    if ((k.kind === 'http' && !http) || (k.kind === 'tcp' && !tcp)) {
      invalid(`${field}: a plaintext chain with a terminal filter (${k.kind}) that no TLS chain has is not supported`);
    }
    // Filters that differ from the TLS chain's (another RBAC, other routes) would be dropped without a word.
    const twin = primary.find((p) => chainKind(p.chain, p.field).kind === k.kind);
    if (twin !== undefined && JSON.stringify(chain.filters) !== JSON.stringify(twin.chain.filters)) {
      notEnforced(`${field}.filters`, `plaintext connections get the filters of ${twin.field}`);
    }
  }
  listenerFilters(l.listener_filters ?? []);
  const firstByteTimeoutMs = durationMs(l.listener_filters_timeout, DEFAULTS.listenerFiltersTimeoutMs, 'listener_filters_timeout');
  const model: ListenerModel = {
    name: l.name,
    address,
    port,
    direction,
    firstByteTimeoutMs,
    ...(l.continue_on_listener_filters_timeout === true ? { continueOnFiltersTimeout: true } : {}),
    useOriginalDst: wrapped<boolean>(l.use_original_dst, false),
    bindToPort: wrapped<boolean>(l.bind_to_port, true),
    ...(http ? { http } : {}),
    ...(tcp ? { tcp } : {}),
    ...(tls ? { tls } : {}),
  };
  return { model, inlineRoutes };
}
