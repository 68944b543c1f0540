// Compiles the mesh config into the xDS v3 resources (encoded protobuf) one proxy needs, from its node identity.
// Pure: no I/O, the same input gives the same bytes.
import { DEFAULTS } from '../src/config/model.js';
import { spiffeIdOf } from '../src/tls/peer.js';
import { ROOT_CA_SECRET, WORKLOAD_CERT_SECRET } from '../src/tls/secrets.js';
import { MESSAGE_NAMES, TYPE_URLS, anyField, encodeMessage } from '../src/config/protos.js';
import {
  isHttpProtocol,
  type FaultConfig,
  type RateLimitConfig,
  type MeshConfig,
  type OutlierDetectionConfig,
  type PortConfig,
  type PortProtocol,
  type ServiceConfig,
  type ServiceRef,
} from './mesh-config.js';
import { inboundAuthFilters, inboundNetworkFilters } from './authz-compiler.js';
import { isIP } from 'node:net';
import { canonicalIp } from '../src/config/values.js';

/** What a proxy tells about itself in the xDS Node (id + metadata). */
export interface NodeInfo {
  readonly id: string;
  readonly service: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly appPort?: number;
  readonly inboundPort: number;
  readonly outboundPort: number;
  /**
   * The proxy holds a workload certificate (flags, or the mesh CA): only then are the mesh's mtls modes compiled
   * into transport sockets. Without one its traffic stays plaintext (and the proxy says so loudly), so a mesh
   * whose proxies have no identities yet keeps working.
   */
  readonly workloadIdentity?: boolean;
  /**
   * REDIRECT: the pod's traffic reaches the proxy by iptables (`pillion iptables`), as Istio's INTERCEPTION_MODE:
   * the outbound listener takes every port on every address (use_original_dst) and hands each connection to the
   * service its original destination names, else to the mesh's outboundTrafficPolicy.
   */
  readonly interception?: 'REDIRECT';
}

export interface XdsResource {
  readonly name: string;
  readonly typeUrl: string;
  /** The encoded resource message itself (what goes into DiscoveryResponse.resources[].value). */
  readonly value: Uint8Array;
}

export interface XdsResources {
  readonly listeners: XdsResource[];
  readonly routes: XdsResource[];
  readonly clusters: XdsResource[];
  readonly endpoints: XdsResource[];
  /** Things the operator should know (e.g. the node's service is not in the mesh config). */
  readonly warnings: string[];
}

const ADS = { ads: {}, resource_api_version: 'V3' };
const HCM_FILTER = 'envoy.filters.network.http_connection_manager';
const TCP_FILTER = 'envoy.filters.network.tcp_proxy';
const ROUTER_FILTER = 'envoy.filters.http.router';
const FAULT_FILTER = 'envoy.filters.http.fault';
const LOCAL_RATELIMIT_FILTER = 'envoy.filters.http.local_ratelimit';
const HTTP_INSPECTOR = 'envoy.filters.listener.http_inspector';
const TLS_INSPECTOR = 'envoy.filters.listener.tls_inspector';
const TLS_SOCKET = 'envoy.transport_sockets.tls';
const HTTP_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

export function clusterName(service: string, namespace: string, port: number): string {
  return `${service}.${namespace}:${port}`;
}

function duration(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

function socketAddress(address: string, port: number) {
  return { socket_address: { address, port_value: port } };
}

function isHttp2(p: PortProtocol): boolean {
  return p === 'http2' || p === 'grpc';
}

// ---- clusters and endpoints --------------------------------------------------------------------------

const LB_ENUM = { least_request: 'LEAST_REQUEST', round_robin: 'ROUND_ROBIN', ring_hash: 'RING_HASH', random: 'RANDOM' } as const;

/**
 * The policy a proxyless gRPC client gets for each mesh policy: the nearest one every gRPC implementation takes.
 * gRPC C-core 1.51 (python3-grpcio on Debian 12) validates the lb_policy enum and knows only ROUND_ROBIN and
 * RING_HASH (gRFC A27, A42), reading load_balancing_policy only behind an experimental switch; @grpc/grpc-js-xds
 * knows only round_robin and ring_hash. least_request and random become round_robin (the spread is even either
 * way; least-request's active-request counts are a sidecar's).
 */
const PROXYLESS_LB = { least_request: 'round_robin', round_robin: 'round_robin', ring_hash: 'ring_hash', random: 'round_robin' } as const;

/**
 * A service port's Cluster. For sidecars (`proxyless` false) it carries the mesh policy as it is; for proxyless
 * gRPC clients the nearest policy gRPC implements (PROXYLESS_LB) in lb_policy (with ring_hash_lb_config for
 * RING_HASH), the field every gRPC xDS client reads (gRFC A27, A42), and no load_balancing_policy list:
 * grpc-js-xds 1.14 prefers the list but NACKs a RingHash entry there (it wants hash_function XX_HASH, not the
 * proto default, and then reads minimum_ring_size, a uint64, as a string: "min_ring_size must be a number"),
 * while its lb_policy path reads both right.
 */
function serviceCluster(s: ServiceConfig, port: PortConfig, proxyless = false): Record<string, unknown> {
  const lb = s.policy.loadBalancer;
  const policy = proxyless ? PROXYLESS_LB[lb.policy] : lb.policy;
  const cb = { ...DEFAULTS.circuitBreakers, ...s.policy.circuitBreakers };
  const cluster: Record<string, unknown> = {
    name: clusterName(s.name, s.namespace, port.port),
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS },
    connect_timeout: duration(s.policy.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs),
    lb_policy: LB_ENUM[policy],
    circuit_breakers: {
      thresholds: [
        {
          priority: 'DEFAULT',
          max_connections: { value: cb.maxConnections },
          max_pending_requests: { value: cb.maxPendingRequests },
          max_requests: { value: cb.maxRequests },
          max_retries: { value: cb.maxRetries },
          ...retryBudget(s),
        },
      ],
    },
  };
  if (policy === 'least_request') {
    cluster.least_request_lb_config = { choice_count: { value: lb.choiceCount ?? DEFAULTS.choiceCount } };
  } else if (policy === 'ring_hash') {
    cluster.ring_hash_lb_config = { minimum_ring_size: { value: lb.minRingSize ?? DEFAULTS.minRingSize } };
  }
  const od = s.policy.outlierDetection;
  if (od) {
    const d = DEFAULTS.outlierDetection;
    cluster.outlier_detection = {
      consecutive_5xx: { value: od.consecutive5xx ?? d.consecutive5xx },
      consecutive_gateway_failure: { value: od.consecutiveGatewayFailure ?? d.consecutiveGatewayFailure },
      // Envoy enforces gateway-failure ejections at 0% by default; the operator asked for them, so enforce.
      enforcing_consecutive_gateway_failure: { value: 100 },
      interval: duration(od.intervalMs ?? d.intervalMs),
      base_ejection_time: duration(od.baseEjectionTimeMs ?? d.baseEjectionTimeMs),
      max_ejection_percent: { value: od.maxEjectionPercent ?? d.maxEjectionPercent },
      ...outlierExtras(od),
    };
  }
  if (localityWeighted(s)) cluster.common_lb_config = { locality_weighted_lb_config: {} };
  const hc = s.policy.healthCheck;
  // Sidecars only: a proxyless gRPC client does no Envoy active health checking.
  if (hc && !proxyless) {
    const d = DEFAULTS.healthCheck;
    const intervalMs = hc.intervalMs ?? d.intervalMs;
    cluster.health_checks = [
      {
        timeout: duration(hc.timeoutMs ?? d.timeoutMs),
        interval: duration(intervalMs),
        // The mesh config has one interval: probe at it from the start, not at Envoy's 60 s until traffic comes.
        no_traffic_interval: duration(intervalMs),
        // Spreads the probes of many sidecars over a tenth of the interval.
        interval_jitter_percent: 10,
        unhealthy_threshold: { value: hc.unhealthyThreshold ?? d.unhealthyThreshold },
        healthy_threshold: { value: hc.healthyThreshold ?? d.healthyThreshold },
        ...(hc.path !== undefined ? { http_health_check: { path: hc.path } } : { tcp_health_check: {} }),
      },
    ];
  }
  if (isHttp2(port.protocol)) {
    cluster.typed_extension_protocol_options = {
      [HTTP_OPTIONS_KEY]: anyField(MESSAGE_NAMES.HttpProtocolOptions, { explicit_http_config: { http2_protocol_options: {} } }),
    };
  }
  // No load_balancing_policy list, for either: proxyless clients get their own Clusters (above), and a sidecar
  // Envoy prefers the list to lb_policy, so a round_robin entry there turned its least-request into round robin.
  return cluster;
}

/**
 * The outlier_detection fields beyond the consecutive counters. Envoy (and gRPC, gRFC A50) run the success-rate
 * detector unless enforcing_success_rate is 0, and the failure-percentage one only when enforcing_failure_percentage
 * is above 0: the mesh config turns each on by naming it, so both enforcing fields say what it asked for.
 * Proxyless gRPC clients read only these interval detectors (with the ejection times and percent), not the
 * consecutive counters. Every field of a detector that is on is written out, defaults included: grpc-js 1.14
 * copies an unset field over its own default as undefined (Object.assign), after which its detector never acts.
 */
function outlierExtras(od: OutlierDetectionConfig): Record<string, unknown> {
  const d = DEFAULTS.outlierDetection;
  const base = od.baseEjectionTimeMs ?? d.baseEjectionTimeMs;
  const out: Record<string, unknown> = {
    // Envoy's default when unset is max(300 s, base); gRPC's is 300 s flat, so say it.
    max_ejection_time: duration(od.maxEjectionTimeMs ?? Math.max(d.maxEjectionTimeMs, base)),
    enforcing_success_rate: { value: od.successRate ? 100 : 0 },
  };
  if (od.splitExternalLocalOriginErrors === true) out.split_external_local_origin_errors = true;
  if (od.consecutiveLocalOriginFailure !== undefined) out.consecutive_local_origin_failure = { value: od.consecutiveLocalOriginFailure };
  const sr = od.successRate;
  if (sr) {
    out.success_rate_minimum_hosts = { value: sr.minimumHosts ?? d.successRate.minimumHosts };
    out.success_rate_request_volume = { value: sr.requestVolume ?? d.successRate.requestVolume };
    // Envoy's factor is in thousandths (1900 = 1.9).
    out.success_rate_stdev_factor = { value: sr.stdevFactor === undefined ? d.successRate.stdevFactor : Math.round(sr.stdevFactor * 1000) };
  }
  const fp = od.failurePercentage;
  if (fp) {
    out.enforcing_failure_percentage = { value: 100 };
    out.failure_percentage_threshold = { value: fp.threshold ?? d.failurePercentage.threshold };
    out.failure_percentage_minimum_hosts = { value: fp.minimumHosts ?? d.failurePercentage.minimumHosts };
    out.failure_percentage_request_volume = { value: fp.requestVolume ?? d.failurePercentage.requestVolume };
  }
  return out;
}

/** The mesh config gave its localities weights (validation makes it all or none): Envoy needs the switch to use them. */
function localityWeighted(s: ServiceConfig): boolean {
  return s.endpoints.some((e) => e.locality.weight !== undefined);
}

function loadAssignment(s: ServiceConfig, port: PortConfig): Record<string, unknown> {
  const groups = new Map<string, { region: string; zone: string; priority: number; weight?: number; eps: ServiceConfig['endpoints'][number][] }>();
  for (const e of s.endpoints) {
    const priority = e.priority ?? 0;
    const key = `${priority}\u0000${e.locality.region}\u0000${e.locality.zone}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { region: e.locality.region, zone: e.locality.zone, priority, weight: e.locality.weight, eps: [] }));
    g.eps.push(e);
  }
  return {
    cluster_name: clusterName(s.name, s.namespace, port.port),
    endpoints: [...groups.values()].map((g) => ({
      locality: { region: g.region, zone: g.zone },
      // gRFC A27: proxyless gRPC clients ignore a locality without a weight; Envoy ignores it unless
      // locality-weighted balancing is on. Without an explicit one, the sum of the endpoint weights keeps both right.
      load_balancing_weight: { value: g.weight ?? Math.max(1, g.eps.reduce((sum, e) => sum + e.weight, 0)) },
      ...(g.priority > 0 ? { priority: g.priority } : {}),
      lb_endpoints: g.eps.map((e) => ({
        endpoint: { address: socketAddress(e.address, e.port) },
        health_status: 'HEALTHY',
        load_balancing_weight: { value: e.weight },
      })),
    })),
  };
}

// ---- routes ------------------------------------------------------------------------------------------

/**
 * The Host/:authority names of a service port. As Kubernetes DNS resolves them: the bare `NAME` (and `NAME:PORT`)
 * only for a service in the node's own namespace (`local`); `NAME.NAMESPACE`, `.svc` and `.svc.cluster.local`
 * from everywhere. Names and namespaces are DNS labels (no dots) and a name is unique within its namespace, so
 * no two virtual hosts share a domain: before, one name in two namespaces gave both the bare `NAME`, and every
 * proxy NACKed the whole outbound route table. Names without a port only for a service's first HTTP port
 * (`withoutPort`), so a bare name stays unambiguous too.
 */
function serviceDomains(s: ServiceConfig, port: number, withoutPort: boolean, local: boolean): string[] {
  const qualified = [`${s.name}.${s.namespace}`, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}.svc.cluster.local`];
  const names = local ? [s.name, ...qualified] : qualified;
  return [...(withoutPort ? names : []), ...names.map((n) => `${n}:${port}`)];
}

/** `10.0.0.1:80`, `[fd00::1]:80`: an address and port as a Host header and a listener name write them. */
function hostPort(address: string, port: number): string {
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * Where an application may dial a service port (transparent interception): its virtual addresses on that port,
 * and its endpoints' own address:port (an endpoint serves every port of its service on its one port, as
 * loadAssignment has it: it belongs to the service port of the same number, else to the first port). DNS-named
 * endpoints are left out: a connection's original destination is an IP.
 */
function interceptTargets(s: ServiceConfig, port: PortConfig): { address: string; port: number }[] {
  const out = new Map<string, { address: string; port: number }>();
  for (const a of s.addresses ?? []) out.set(hostPort(a, port.port), { address: a, port: port.port });
  const byNumber = s.ports.some((p) => p.port === port.port);
  for (const e of s.endpoints) {
    if (isIP(e.address) === 0) continue;
    const owns = s.ports.some((p) => p.port === e.port) ? e.port === port.port : byNumber && port === s.ports[0];
    const address = canonicalIp(e.address);
    if (owns) out.set(hostPort(address, e.port), { address, port: e.port });
  }
  return [...out.values()];
}

/**
 * The Host/:authority forms of a service port's intercept targets, for its virtual host: an HTTP client that
 * dials an address sends it as its Host (`10.0.0.1:8080`, or bare on port 80), so Host routing finds the service
 * the original destination names. A target two services share is kept by the first (xDS forbids duplicate domains).
 */
function addressDomains(targets: readonly { address: string; port: number }[], claimed: Set<string>): string[] {
  const out: string[] = [];
  for (const t of targets) {
    const hp = hostPort(t.address, t.port);
    const forms = t.port === 80 ? [hp, isIP(t.address) === 6 ? `[${t.address}]` : t.address] : [hp];
    for (const d of forms) {
      if (claimed.has(d)) continue;
      claimed.add(d);
      out.push(d);
    }
  }
  return out;
}

/** The service's retries.budget, on its cluster (a budget bounds retries to the cluster, whatever route sent them). */
function retryBudget(s: ServiceConfig): Record<string, unknown> {
  const b = s.policy.retries?.budget;
  if (b === undefined) return {};
  return { retry_budget: { budget_percent: { value: b.percent }, min_retry_concurrency: { value: b.minConcurrency } } };
}

function retryPolicy(s: ServiceConfig): Record<string, unknown> | undefined {
  const r = s.policy.retries;
  if (!r) return undefined;
  const out: Record<string, unknown> = { retry_on: r.retryOn.join(','), num_retries: { value: r.attempts } };
  if (r.perTryTimeoutMs !== undefined) out.per_try_timeout = duration(r.perTryTimeoutMs);
  if (r.retriableStatusCodes.length > 0) out.retriable_status_codes = [...r.retriableStatusCodes];
  if (r.backoff) {
    out.retry_back_off = {
      base_interval: duration(r.backoff.baseMs),
      ...(r.backoff.maxMs !== undefined ? { max_interval: duration(r.backoff.maxMs) } : {}),
    };
  }
  return out;
}

function hashPolicies(target: ServiceConfig | undefined): Record<string, unknown>[] {
  const h = target?.policy.loadBalancer.policy === 'ring_hash' ? target.policy.loadBalancer.hashOn : undefined;
  if (!h) return [];
  if ('header' in h) return [{ header: { header_name: h.header } }];
  if ('cookie' in h) return [{ cookie: { name: h.cookie } }];
  return [{ connection_properties: { source_ip: true } }];
}

/** RouteAction for a service's traffic: timeout, retries and the ring-hash key come from the target's policy. */
function routeAction(mesh: Index, targets: readonly (ServiceRef & { weight: number })[], policyOf: ServiceConfig, timeoutMs?: number) {
  const action: Record<string, unknown> = {};
  if (targets.length === 1) {
    action.cluster = clusterName(targets[0]!.service, targets[0]!.namespace, targets[0]!.port);
  } else {
    action.weighted_clusters = {
      clusters: targets.map((t) => ({ name: clusterName(t.service, t.namespace, t.port), weight: { value: t.weight } })),
    };
  }
  // gRPC streams live as long as the call does and carry their own deadline (grpc-timeout): a default route
  // timeout would cut long streams, so gRPC targets get none unless the operator sets one (as Istio does).
  const grpcOnly = targets.every((t) => mesh.get(t.service, t.namespace)?.ports.find((p) => p.port === t.port)?.protocol === 'grpc');
  action.timeout = duration(timeoutMs ?? policyOf.policy.timeoutMs ?? (grpcOnly ? 0 : DEFAULTS.routeTimeoutMs));
  const retry = retryPolicy(policyOf);
  if (retry) action.retry_policy = retry;
  if (policyOf.policy.retries?.hedge === true) action.hedge_policy = { hedge_on_per_try_timeout: true };
  // With a split, hash on the first target's key: Envoy computes one hash per request, not per cluster.
  const hp = hashPolicies(mesh.get(targets[0]!.service, targets[0]!.namespace));
  if (hp.length > 0) action.hash_policy = hp;
  return action;
}

function serviceVirtualHost(mesh: Index, s: ServiceConfig, port: PortConfig, first: boolean, local: boolean): Record<string, unknown> {
  const routes: Record<string, unknown>[] = s.routes.map((r, i) => ({
    name: `${s.name}.${s.namespace}:${port.port}/${i}`,
    match: {
      [r.match.kind]: r.match.value,
      ...(r.match.headers.length > 0
        ? {
            headers: r.match.headers.map((h) => ({
              name: h.name,
              ...(h.kind === 'present' ? { present_match: true } : { string_match: { [h.kind]: h.value } }),
              ...(h.invert ? { invert_match: true } : {}),
            })),
          }
        : {}),
    },
    route: routeAction(mesh, r.split, s, r.timeoutMs),
    ...faultOverride(r.fault),
  }));
  routes.push({
    name: `${s.name}.${s.namespace}:${port.port}/default`,
    match: { prefix: '/' },
    route: routeAction(mesh, [{ service: s.name, namespace: s.namespace, port: port.port, weight: 1 }], s),
  });
  return { name: clusterName(s.name, s.namespace, port.port), domains: serviceDomains(s, port.port, first, local), routes, ...faultOverride(s.policy.fault) };
}

// ---- listeners ---------------------------------------------------------------------------------------

function hcmFilter(statPrefix: string, routeSpecifier: Record<string, unknown>, httpFilters: readonly Record<string, unknown>[] = []) {
  return {
    name: HCM_FILTER,
    typed_config: anyField(MESSAGE_NAMES.HttpConnectionManager, {
      codec_type: 'AUTO',
      stat_prefix: statPrefix,
      ...routeSpecifier,
      http_filters: [...httpFilters, { name: ROUTER_FILTER, typed_config: anyField(MESSAGE_NAMES.Router, {}) }],
    }),
  };
}

/** A percent as Envoy's FractionalPercent, per million (four decimals of a percent). */
function fractionalPercent(percent: number): Record<string, unknown> {
  return { numerator: Math.round(percent * 10_000), denominator: 'MILLION' };
}

function httpFault(f: FaultConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (f.delay) out.delay = { fixed_delay: duration(f.delay.fixedMs), percentage: fractionalPercent(f.delay.percent) };
  if (f.abort) {
    out.abort = {
      ...(f.abort.grpcStatus !== undefined ? { grpc_status: f.abort.grpcStatus } : { http_status: f.abort.httpStatus }),
      percentage: fractionalPercent(f.abort.percent),
    };
  }
  return out;
}

function faultOverride(f: FaultConfig | undefined): Record<string, unknown> {
  return f === undefined ? {} : { typed_per_filter_config: { [FAULT_FILTER]: anyField(MESSAGE_NAMES.HTTPFault, httpFault(f)) } };
}

/** The fault filter goes into outbound chains only when some route injects faults (each filter costs a step per request). */
function meshHasFaults(mesh: MeshConfig): boolean {
  return mesh.services.some((s) => s.policy.fault !== undefined || s.routes.some((r) => r.fault !== undefined));
}

/** The service's own rate limit, enforced on its inbound listener for every caller together. */
function rateLimitFilter(r: RateLimitConfig): Record<string, unknown> {
  const all = { default_value: fractionalPercent(100) };
  return {
    name: LOCAL_RATELIMIT_FILTER,
    typed_config: anyField(MESSAGE_NAMES.LocalRateLimit, {
      stat_prefix: 'inbound_rate_limit',
      token_bucket: { max_tokens: r.burst, tokens_per_fill: { value: r.requests }, fill_interval: duration(r.perMs) },
      filter_enabled: all,
      filter_enforced: all,
    }),
  };
}

function tcpFilter(statPrefix: string, cluster: string) {
  return {
    name: TCP_FILTER,
    typed_config: anyField(MESSAGE_NAMES.TcpProxy, {
      stat_prefix: statPrefix,
      cluster,
      idle_timeout: duration(DEFAULTS.tcpIdleTimeoutMs),
    }),
  };
}

function inlineRoute(name: string, cluster: string, timeoutMs?: number) {
  return {
    route_config: {
      name,
      virtual_hosts: [
        {
          name,
          domains: ['*'],
          routes: [{ name: `${name}/default`, match: { prefix: '/' }, route: { cluster, ...(timeoutMs !== undefined ? { timeout: duration(timeoutMs) } : {}) } }],
        },
      ],
    },
  };
}

/** A listener whose chains follow a port protocol: HTTP → HCM, tcp → TcpProxy, auto → sniff then either. */
function protocolListener(
  name: string,
  address: string,
  port: number,
  protocol: PortProtocol,
  direction: 'INBOUND' | 'OUTBOUND',
  cluster: string,
  timeoutMs?: number,
  httpFilters: readonly Record<string, unknown>[] = [],
  networkFilters: readonly Record<string, unknown>[] = [],
): Record<string, unknown> {
  const listener: Record<string, unknown> = { name, address: socketAddress(address, port), traffic_direction: direction };
  const hcm = hcmFilter(name, inlineRoute(name, cluster, timeoutMs), httpFilters);
  const tcp = [...networkFilters, tcpFilter(name, cluster)];
  if (protocol === 'tcp') {
    listener.filter_chains = [{ name: `${name}/tcp`, filters: tcp }];
  } else if (protocol === 'auto') {
    // http_inspector sets the application protocol of plaintext HTTP connections; everything else falls to TCP.
    listener.listener_filters = [{ name: HTTP_INSPECTOR }];
    listener.filter_chains = [{ name: `${name}/http`, filter_chain_match: { application_protocols: ['http/1.1', 'h2c'] }, filters: [hcm] }];
    listener.default_filter_chain = { name: `${name}/tcp`, filters: tcp };
  } else {
    listener.filter_chains = [{ name: `${name}/http`, filters: [hcm] }];
  }
  return listener;
}

// ---- mTLS --------------------------------------------------------------------------------------------

const SDS_CERT = { name: WORKLOAD_CERT_SECRET, sds_config: ADS };
const SDS_ROOT = { name: ROOT_CA_SECRET, sds_config: ADS };

/**
 * The transport socket of a cluster to `target`: our workload certificate, the mesh trust bundle, and secure
 * naming (Istio's shape): the peer must prove the SPIFFE ID of the target's service account.
 */
function upstreamMtls(mesh: MeshConfig, target: ServiceConfig): Record<string, unknown> {
  const spiffeId = spiffeIdOf(mesh.trustDomain, target.namespace, target.serviceAccount);
  return {
    name: TLS_SOCKET,
    typed_config: anyField(MESSAGE_NAMES.UpstreamTlsContext, {
      common_tls_context: {
        tls_certificate_sds_secret_configs: [SDS_CERT],
        combined_validation_context: {
          default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: spiffeId } }] },
          validation_context_sds_secret_config: SDS_ROOT,
        },
      },
    }),
  };
}

const DOWNSTREAM_MTLS = {
  name: TLS_SOCKET,
  typed_config: anyField(MESSAGE_NAMES.DownstreamTlsContext, {
    common_tls_context: { tls_certificate_sds_secret_configs: [SDS_CERT], validation_context_sds_secret_config: SDS_ROOT },
    require_client_certificate: { value: true },
  }),
};

/**
 * The inbound listener per mtls mode, as Istio writes it: a tls_inspector, chains matching transport_protocol
 * "tls" with the DownstreamTlsContext and, for PERMISSIVE only, the same chains for "raw_buffer" (plaintext).
 */
function withInboundMtls(listener: Record<string, unknown>, mode: 'STRICT' | 'PERMISSIVE'): Record<string, unknown> {
  type Chain = Record<string, unknown> & { filter_chain_match?: Record<string, unknown> };
  const chains = [...((listener.filter_chains ?? []) as Chain[])];
  const fallback = listener.default_filter_chain as Chain | undefined;
  if (fallback !== undefined) chains.push(fallback);
  const secured = chains.map((c) => ({
    ...c,
    name: `${String(c.name)}/tls`,
    filter_chain_match: { ...c.filter_chain_match, transport_protocol: 'tls' },
    transport_socket: DOWNSTREAM_MTLS,
  }));
  const listenerFilters = [{ name: TLS_INSPECTOR }, ...((listener.listener_filters ?? []) as unknown[])];
  if (mode === 'STRICT') {
    const { default_filter_chain: _dropped, ...rest } = listener;
    return { ...rest, listener_filters: listenerFilters, filter_chains: secured };
  }
  const plain = ((listener.filter_chains ?? []) as Chain[]).map((c) => ({ ...c, filter_chain_match: { ...c.filter_chain_match, transport_protocol: 'raw_buffer' } }));
  return { ...listener, listener_filters: listenerFilters, filter_chains: [...secured, ...plain] };
}

/** The clusters of every service with mTLS to the services that have it, for nodes with an identity (once per mesh). */
const mtlsClustersByMesh = new WeakMap<MeshConfig, readonly XdsResource[]>();

function mtlsClusters(mesh: MeshConfig, shared: SharedResources): readonly XdsResource[] {
  const cached = mtlsClustersByMesh.get(mesh);
  if (cached !== undefined) return cached;
  const encodeCluster = encoder(MESSAGE_NAMES.Cluster, TYPE_URLS.Cluster);
  const out: XdsResource[] = [];
  let i = 0;
  for (const s of mesh.services) {
    for (const port of s.ports) {
      const plain = shared.clusters[i++]!;
      out.push(s.policy.mtls === 'DISABLE' ? plain : encodeCluster({ ...serviceCluster(s, port), transport_socket: upstreamMtls(mesh, s) }));
    }
  }
  mtlsClustersByMesh.set(mesh, out);
  return out;
}

// ---- the node ----------------------------------------------------------------------------------------

class Index {
  private readonly byKey = new Map<string, ServiceConfig>();
  constructor(readonly mesh: MeshConfig) {
    for (const s of mesh.services) this.byKey.set(`${s.name}.${s.namespace}`, s);
  }
  get(service: string, namespace: string): ServiceConfig | undefined {
    return this.byKey.get(`${service}.${namespace}`);
  }
}

interface SharedResources {
  readonly mesh: MeshConfig;
  readonly index: Index;
  /** The outbound route table's virtual hosts, each encoded as a RouteConfiguration fragment (see outboundRoutes). */
  readonly virtualHosts: readonly VirtualHostFragments[];
  /** The encoded outbound route table per namespace that holds services ('' for every other namespace). */
  readonly routesByNamespace: Map<string, readonly XdsResource[]>;
  readonly clusters: readonly XdsResource[];
  readonly endpoints: readonly XdsResource[];
}

interface VirtualHostFragments {
  readonly namespace: string;
  /** The same routes under the service port's intercept targets as domains (see addressDomains); null: none. */
  readonly addresses: Uint8Array | null;
  /** `{ virtual_hosts: [vh] }` encoded with the bare names (for nodes of the service's namespace) and without. */
  readonly local: Uint8Array;
  readonly remote: Uint8Array;
}

/**
 * What every node of a mesh gets alike (service clusters, their endpoints; the outbound route table per
 * namespace), encoded once per MeshConfig object: a config edit then costs one compile, not one per connected proxy.
 */
const sharedByMesh = new WeakMap<MeshConfig, SharedResources>();

/**
 * A service's encoded Cluster and ClusterLoadAssignment per port, keyed by the service's whole config: an edit
 * re-encodes only the services it touched. Holds the entries of the latest compile only. The key must cover every
 * input of serviceCluster and loadAssignment: today the service and the port; anything mesh-wide they come to
 * read (a trust domain for mTLS, say) must join the key.
 */
let encodedByService = new Map<string, { cluster: XdsResource; endpoints: XdsResource }>();

function sharedResources(mesh: MeshConfig): SharedResources {
  const cached = sharedByMesh.get(mesh);
  if (cached !== undefined) return cached;
  const index = new Index(mesh);
  const clusters: XdsResource[] = [];
  const endpoints: XdsResource[] = [];
  const virtualHosts: VirtualHostFragments[] = [];
  const encodeFragment = (vh: Record<string, unknown>) => encodeMessage(MESSAGE_NAMES.RouteConfiguration, { virtual_hosts: [vh] });
  const encodedNow = new Map<string, { cluster: XdsResource; endpoints: XdsResource }>();
  const encodeCluster = encoder(MESSAGE_NAMES.Cluster, TYPE_URLS.Cluster);
  const encodeAssignment = encoder(MESSAGE_NAMES.ClusterLoadAssignment, TYPE_URLS.ClusterLoadAssignment);
  const claimed = new Set<string>();
  for (const s of mesh.services) {
    const serviceKey = JSON.stringify(s);
    let firstHttp = true;
    for (const port of s.ports) {
      const key = `${port.port} ${serviceKey}`;
      let encoded = encodedByService.get(key) ?? encodedNow.get(key);
      if (encoded === undefined) {
        encoded = { cluster: encodeCluster(serviceCluster(s, port)), endpoints: encodeAssignment(loadAssignment(s, port)) };
      }
      encodedNow.set(key, encoded);
      clusters.push(encoded.cluster);
      endpoints.push(encoded.endpoints);
      if (isHttpProtocol(port.protocol)) {
        const domains = addressDomains(interceptTargets(s, port), claimed);
        const remote = serviceVirtualHost(index, s, port, firstHttp, false);
        virtualHosts.push({
          namespace: s.namespace,
          local: encodeFragment(serviceVirtualHost(index, s, port, firstHttp, true)),
          remote: encodeFragment(remote),
          // Its own virtual host, in intercepting nodes' tables only: an endpoint change then re-sends RDS to them alone.
          addresses: domains.length === 0 ? null : encodeFragment({ ...remote, name: `${String(remote.name)}|addresses`, domains }),
        });
        firstHttp = false;
      }
    }
  }
  encodedByService = encodedNow;
  const shared: SharedResources = {
    mesh,
    index,
    virtualHosts,
    routesByNamespace: new Map(),
    clusters,
    endpoints,
  };
  sharedByMesh.set(mesh, shared);
  return shared;
}

/** The proxyless form of each service port's Cluster, per service config as encodedByService (latest compile only). */
let proxylessByService = new Map<string, XdsResource>();
const proxylessClustersByMesh = new WeakMap<MeshConfig, readonly XdsResource[]>();

/**
 * Every service port's Cluster as a proxyless gRPC client gets it (serviceCluster with `proxyless`: the nearest
 * policy gRPC implements), in the order of the sidecars' clusters. Encoded once per MeshConfig, and only the
 * services an edit touched, when a proxyless client is connected.
 */
export function compileProxylessClusters(mesh: MeshConfig): readonly XdsResource[] {
  const cached = proxylessClustersByMesh.get(mesh);
  if (cached !== undefined) return cached;
  const encodeCluster = encoder(MESSAGE_NAMES.Cluster, TYPE_URLS.Cluster);
  const now = new Map<string, XdsResource>();
  const clusters: XdsResource[] = [];
  for (const s of mesh.services) {
    const serviceKey = JSON.stringify(s);
    for (const port of s.ports) {
      const key = `${port.port} ${serviceKey}`;
      const encoded = proxylessByService.get(key) ?? now.get(key) ?? encodeCluster(serviceCluster(s, port, true));
      now.set(key, encoded);
      clusters.push(encoded);
    }
  }
  proxylessByService = now;
  proxylessClustersByMesh.set(mesh, clusters);
  return clusters;
}

const OUTBOUND_ROUTES_HEAD = encodeMessage(MESSAGE_NAMES.RouteConfiguration, { name: 'outbound' });

/**
 * Intercepting nodes' catch-all virtual hosts for HTTP that no Host (nor the dialed address) names, as Istio's:
 * `allow_any` proxies it as HTTP to the connection's original destination (PassthroughCluster, ORIGINAL_DST);
 * `block_all` (REGISTRY_ONLY) answers 502 with the reason in the body.
 */
const ALLOW_ANY_VHOST = encodeMessage(MESSAGE_NAMES.RouteConfiguration, {
  virtual_hosts: [{ name: 'allow_any', domains: ['*'], routes: [{ name: 'allow_any', match: { prefix: '/' }, route: { cluster: 'PassthroughCluster', timeout: { seconds: 0, nanos: 0 } } }] }],
});
const BLOCK_ALL_VHOST = encodeMessage(MESSAGE_NAMES.RouteConfiguration, {
  virtual_hosts: [
    {
      name: 'block_all',
      domains: ['*'],
      routes: [
        {
          name: 'block_all',
          match: { prefix: '/' },
          direct_response: { status: 502, body: { inline_string: 'outbound traffic to an address outside the mesh is refused: outboundTrafficPolicy is REGISTRY_ONLY' } },
        },
      ],
    },
  ],
});

/**
 * The outbound route table as a node of `namespace` sees it. Protobuf concatenation is a merge that appends
 * repeated fields, and protobufjs writes fields in number order, so the name followed by each virtual host's
 * fragment is the very bytes encoding the whole table would give: each virtual host is encoded twice per compile
 * (with and without its bare names), not once per namespace. One table per namespace that holds services (what
 * the mesh config names), shared by its nodes; nodes of any other namespace (any string a node announces) share
 * the table without bare names, so nodes cannot grow this cache. Intercepting nodes get the same table plus the
 * `|addresses` virtual hosts (addressDomains): at most two tables per namespace.
 */
function outboundRoutes(shared: SharedResources, namespace: string, intercepting: boolean): readonly XdsResource[] {
  const ns = shared.virtualHosts.some((v) => v.namespace === namespace) ? namespace : '';
  const key = intercepting ? `${ns}\u0000intercepting` : ns;
  let routes = shared.routesByNamespace.get(key);
  if (routes === undefined) {
    const parts = [OUTBOUND_ROUTES_HEAD, ...shared.virtualHosts.map((v) => (v.namespace === ns ? v.local : v.remote))];
    if (intercepting) {
      for (const v of shared.virtualHosts) if (v.addresses !== null) parts.push(v.addresses);
      parts.push(shared.mesh.outboundTrafficPolicy?.mode === 'REGISTRY_ONLY' ? BLOCK_ALL_VHOST : ALLOW_ANY_VHOST);
    }
    const value = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      value.set(p, at);
      at += p.length;
    }
    routes = [{ name: 'outbound', typeUrl: TYPE_URLS.RouteConfiguration, value }];
    shared.routesByNamespace.set(key, routes);
  }
  return routes;
}

function encoder(typeName: string, typeUrl: string): (m: Record<string, unknown>) => XdsResource {
  return (m) => ({ name: String(m.name ?? m.cluster_name), typeUrl, value: encodeMessage(typeName, m) });
}

/** Compile every resource one node needs: outbound to every service, its egress ports, and its inbound. */
export function compileForNode(mesh: MeshConfig, node: NodeInfo): XdsResources {
  const shared = sharedResources(mesh);
  const index = shared.index;
  const warnings: string[] = [];
  const listeners: Record<string, unknown>[] = [];
  const clusters: Record<string, unknown>[] = [];
  const mtls = node.workloadIdentity === true;

  const intercepting = node.interception === 'REDIRECT';
  if (intercepting) {
    listeners.push(interceptingOutbound(mesh, node.outboundPort));
    clusters.push(...passthroughClusters());
  } else {
    listeners.push({
      name: 'outbound',
      address: socketAddress('127.0.0.1', node.outboundPort),
      traffic_direction: 'OUTBOUND',
      filter_chains: [{ name: 'outbound/http', filters: [outboundHcm(mesh)] }],
    });
  }

  const own = index.get(node.service, node.namespace);
  if (!own) {
    warnings.push(`service ${node.service}.${node.namespace} of node ${node.id} is not in the mesh config: no inbound or egress config`);
  } else {
    for (const e of own.egress) {
      const target = index.get(e.service, e.namespace)!;
      const port = target.ports.find((p) => p.port === e.port)!;
      const name = `outbound:${e.localPort}`;
      listeners.push(
        protocolListener(name, '127.0.0.1', e.localPort, port.protocol, 'OUTBOUND', clusterName(e.service, e.namespace, e.port), target.policy.timeoutMs),
      );
    }
    if (node.appPort !== undefined && intercepting) {
      const inbound = interceptingInbound(mesh, own, node, mtls);
      listeners.push(...inbound.listeners);
      clusters.push(...inbound.clusters);
    } else if (node.appPort !== undefined) {
      const protocol = own.ports[0]!.protocol;
      const name = `inbound:${node.appPort}`;
      const inbound: Record<string, unknown> = {
        name,
        type: 'STATIC',
        connect_timeout: duration(own.policy.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs),
        load_assignment: {
          cluster_name: name,
          endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress('127.0.0.1', node.appPort) }, health_status: 'HEALTHY' }] }],
        },
      };
      if (isHttp2(protocol)) {
        inbound.typed_extension_protocol_options = {
          [HTTP_OPTIONS_KEY]: anyField(MESSAGE_NAMES.HttpProtocolOptions, { explicit_http_config: { http2_protocol_options: {} } }),
        };
      }
      clusters.push(inbound);
      // Timeout 0 on inbound: the caller's sidecar owns the deadline, a second one here would only race it.
      const rateLimit = own.policy.rateLimit;
      // Authentication and authorization first: a caller refused there must not drain the rate limit's bucket.
      const httpFilters = [...inboundAuthFilters(mesh, own), ...(rateLimit ? [rateLimitFilter(rateLimit)] : [])];
      // Intercepted: peers reach the pod's IPv4 and IPv6 addresses, redirected to this port (dual stack).
      const listener = protocolListener('inbound', intercepting ? '::' : '0.0.0.0', node.inboundPort, protocol, 'INBOUND', name, 0, httpFilters, inboundNetworkFilters(mesh, own));
      const mode = own.policy.mtls;
      listeners.push(mtls && mode !== 'DISABLE' ? withInboundMtls(listener, mode) : listener);
    } else {
      warnings.push(`node ${node.id} announced no appPort: no inbound listener`);
    }
  }

  return {
    listeners: [...listeners.map((l) => boundedSniff(mesh, l)).map(encoder(MESSAGE_NAMES.Listener, TYPE_URLS.Listener)), ...(intercepting ? interceptListeners(mesh) : [])],
    routes: [...outboundRoutes(shared, node.namespace, intercepting)],
    clusters: [...(mtls ? mtlsClusters(mesh, shared) : shared.clusters), ...clusters.map(encoder(MESSAGE_NAMES.Cluster, TYPE_URLS.Cluster))],
    endpoints: [...shared.endpoints],
    warnings,
  };
}

// ---- transparent interception ------------------------------------------------------------------------

/** Envoy's and Istio's names for where unclaimed intercepted traffic goes (outboundTrafficPolicy). */
export const PASSTHROUGH_CLUSTER = 'PassthroughCluster';
export const BLACKHOLE_CLUSTER = 'BlackHoleCluster';

function outboundHcm(mesh: MeshConfig): Record<string, unknown> {
  return hcmFilter(
    'outbound',
    { rds: { config_source: ADS, route_config_name: 'outbound' } },
    meshHasFaults(mesh) ? [{ name: FAULT_FILTER, typed_config: anyField(MESSAGE_NAMES.HTTPFault, {}) }] : [],
  );
}

/** ALLOW_ANY: to the connection's original address (ORIGINAL_DST). REGISTRY_ONLY: a cluster with no endpoints. */
function passthroughClusters(): Record<string, unknown>[] {
  const connect_timeout = duration(DEFAULTS.connectTimeoutMs);
  return [
    { name: PASSTHROUGH_CLUSTER, type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout },
    { name: BLACKHOLE_CLUSTER, type: 'STATIC', connect_timeout, load_assignment: { cluster_name: BLACKHOLE_CLUSTER } },
  ];
}

/**
 * The outbound listener of an intercepting node (Istio's virtualOutbound): every address on the outbound port, dual
 * stack; use_original_dst hands each redirected connection to the listener of its original destination
 * (interceptListeners); what none claims is served here: plaintext HTTP by the Host route table (what an app
 * sending Host: backend to this port directly also gets), anything else by the outboundTrafficPolicy's cluster.
 */
function interceptingOutbound(mesh: MeshConfig, port: number): Record<string, unknown> {
  const unclaimed = mesh.outboundTrafficPolicy?.mode === 'REGISTRY_ONLY' ? BLACKHOLE_CLUSTER : PASSTHROUGH_CLUSTER;
  return {
    name: 'outbound',
    address: socketAddress('::', port),
    traffic_direction: 'OUTBOUND',
    use_original_dst: { value: true },
    listener_filters: [{ name: HTTP_INSPECTOR }],
    filter_chains: [{ name: 'outbound/http', filter_chain_match: { application_protocols: ['http/1.1', 'h2c'] }, filters: [outboundHcm(mesh)] }],
    default_filter_chain: { name: `outbound/${unclaimed}`, filters: [tcpFilter(unclaimed, unclaimed)] },
  };
}

/** Istio's name for inbound traffic to a port the pod's service does not declare. */
export const INBOUND_PASSTHROUGH_CLUSTER = 'InboundPassthroughCluster';
/**
 * Where the inbound passthrough connects from (Istio's): the pod's rules return connections from this source on
 * lo before anything else (src/intercept/iptables-rules.ts), so dialing the pod's own address does not loop back.
 */
export const INBOUND_PASSTHROUGH_SOURCE = '127.0.0.6';
/** The IPv6 one (Istio's `::6`), which `pillion iptables --apply` puts on lo. */
export const INBOUND_PASSTHROUGH_SOURCE_V6 = '::6';
/** The default of the mesh's protocolDetectionTimeout (see MeshConfig). */
export const PROTOCOL_DETECTION_TIMEOUT_MS = 1_000;

/**
 * A listener that sniffs (listener_filters) and has a TCP chain gets the mesh's protocolDetectionTimeout with
 * continue_on_listener_filters_timeout, as Istio writes it: a client that stays silent (a server-first
 * protocol) is TCP after that wait, never stalled or closed.
 */
function boundedSniff(mesh: MeshConfig, listener: Record<string, unknown>): Record<string, unknown> {
  if (listener.listener_filters === undefined) return listener;
  type Chain = { filters?: { name?: string }[] };
  const chains = [...((listener.filter_chains ?? []) as Chain[]), ...(listener.default_filter_chain ? [listener.default_filter_chain as Chain] : [])];
  if (!chains.some((c) => (c.filters ?? []).some((f) => f.name === TCP_FILTER))) return listener;
  const ms = mesh.protocolDetectionTimeoutMs ?? PROTOCOL_DETECTION_TIMEOUT_MS;
  return { ...listener, listener_filters_timeout: duration(ms), continue_on_listener_filters_timeout: true };
}

/**
 * The inbound side of an intercepting node: the inbound listener on `[::]:inboundPort` takes every redirected
 * connection (use_original_dst) and hands it to the listener of its original destination port, one per port of
 * the pod's service and its app port (bind_to_port false, `inbound|PORT`), each with that port's protocol
 * handling, mTLS and authorization, to the app at 127.0.0.1:PORT (cluster `inbound:PORT`; the proxy's own
 * connections to 127.0.0.1 are never redirected). A port the service does not declare is passed through as TCP
 * to the original destination from 127.0.0.6 or ::6 (cluster InboundPassthroughCluster, Istio's), under the same
 * mTLS.
 */
function interceptingInbound(
  mesh: MeshConfig,
  own: ServiceConfig,
  node: NodeInfo,
  mtls: boolean,
): { listeners: Record<string, unknown>[]; clusters: Record<string, unknown>[] } {
  const connect_timeout = duration(own.policy.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs);
  const rateLimit = own.policy.rateLimit;
  const httpFilters = [...inboundAuthFilters(mesh, own), ...(rateLimit ? [rateLimitFilter(rateLimit)] : [])];
  const networkFilters = inboundNetworkFilters(mesh, own);
  const mode = own.policy.mtls;
  const secure = (l: Record<string, unknown>): Record<string, unknown> => (mtls && mode !== 'DISABLE' ? withInboundMtls(l, mode) : l);
  const ports = new Map<number, PortProtocol>();
  for (const p of own.ports) ports.set(p.port, p.protocol);
  // The app port serves the service's first port when no port has its number (service port 80, app on 8080).
  if (!ports.has(node.appPort!)) ports.set(node.appPort!, own.ports[0]!.protocol);
  const listeners: Record<string, unknown>[] = [];
  const clusters: Record<string, unknown>[] = [
    {
      name: INBOUND_PASSTHROUGH_CLUSTER,
      type: 'ORIGINAL_DST',
      lb_policy: 'CLUSTER_PROVIDED',
      connect_timeout,
      upstream_bind_config: {
        source_address: { address: INBOUND_PASSTHROUGH_SOURCE, port_value: 0 },
        extra_source_addresses: [{ address: { address: INBOUND_PASSTHROUGH_SOURCE_V6, port_value: 0 } }],
      },
    },
  ];
  listeners.push(
    secure({
      name: 'inbound',
      address: socketAddress('::', node.inboundPort),
      traffic_direction: 'INBOUND',
      use_original_dst: { value: true },
      filter_chains: [{ name: `inbound/${INBOUND_PASSTHROUGH_CLUSTER}`, filters: [...networkFilters, tcpFilter('inbound', INBOUND_PASSTHROUGH_CLUSTER)] }],
    }),
  );
  for (const [port, protocol] of ports) {
    if (port === node.inboundPort || port === node.outboundPort) continue;
    const cluster = `inbound:${port}`;
    const c: Record<string, unknown> = {
      name: cluster,
      type: 'STATIC',
      connect_timeout,
      load_assignment: { cluster_name: cluster, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress('127.0.0.1', port) }, health_status: 'HEALTHY' }] }] },
    };
    if (isHttp2(protocol)) c.typed_extension_protocol_options = { [HTTP_OPTIONS_KEY]: anyField(MESSAGE_NAMES.HttpProtocolOptions, { explicit_http_config: { http2_protocol_options: {} } }) };
    clusters.push(c);
    const l = protocolListener(`inbound|${port}`, '::', port, protocol, 'INBOUND', cluster, 0, httpFilters, networkFilters);
    listeners.push(secure({ ...l, bind_to_port: { value: false } }));
  }
  return { listeners, clusters };
}

const interceptListenersByMesh = new WeakMap<MeshConfig, readonly XdsResource[]>();

/**
 * One listener per intercept target (Istio's per-service listeners, bind_to_port false): reached only through the
 * outbound listener's use_original_dst hand-off. HTTP ports route by Host through the outbound route table (whose
 * virtual hosts also hold the targets as domains); TCP ports go to the service's cluster. Shared by every
 * intercepting node of a mesh.
 */
function interceptListeners(mesh: MeshConfig): readonly XdsResource[] {
  const cached = interceptListenersByMesh.get(mesh);
  if (cached !== undefined) return cached;
  const seen = new Set<string>();
  const out: Record<string, unknown>[] = [];
  for (const s of mesh.services) {
    for (const port of s.ports) {
      const cluster = clusterName(s.name, s.namespace, port.port);
      for (const t of interceptTargets(s, port)) {
        const name = `outbound|${hostPort(t.address, t.port)}`;
        if (seen.has(name)) continue;
        seen.add(name);
        const listener: Record<string, unknown> = {
          name,
          address: socketAddress(t.address, t.port),
          traffic_direction: 'OUTBOUND',
          bind_to_port: { value: false },
        };
        const tcp = { name: `${name}/tcp`, filters: [tcpFilter(name, cluster)] };
        const http = { name: `${name}/http`, filters: [outboundHcm(mesh)] };
        if (port.protocol === 'tcp') listener.filter_chains = [tcp];
        else if (port.protocol === 'auto') {
          listener.listener_filters = [{ name: HTTP_INSPECTOR }];
          listener.filter_chains = [{ ...http, filter_chain_match: { application_protocols: ['http/1.1', 'h2c'] } }];
          listener.default_filter_chain = tcp;
        } else listener.filter_chains = [http];
        out.push(listener);
      }
    }
  }
  const encoded = out.map((l) => boundedSniff(mesh, l)).map(encoder(MESSAGE_NAMES.Listener, TYPE_URLS.Listener));
  interceptListenersByMesh.set(mesh, encoded);
  return encoded;
}

// ---- node identity -----------------------------------------------------------------------------------

type StructValue = { nullValue?: unknown; numberValue?: number; stringValue?: string; boolValue?: boolean };

/** google.protobuf.Struct (protobufjs plain shape) for the Node metadata. */
export function nodeToXds(info: NodeInfo): Record<string, unknown> {
  const fields: Record<string, StructValue> = {
    service: { stringValue: info.service },
    namespace: { stringValue: info.namespace },
    serviceAccount: { stringValue: info.serviceAccount },
    inboundPort: { numberValue: info.inboundPort },
    outboundPort: { numberValue: info.outboundPort },
  };
  if (info.appPort !== undefined) fields.appPort = { numberValue: info.appPort };
  if (info.workloadIdentity === true) fields.workloadIdentity = { boolValue: true };
  if (info.interception !== undefined) fields.interceptionMode = { stringValue: info.interception };
  return { id: info.id, cluster: info.service, metadata: { fields }, user_agent_name: 'pillion' };
}

/**
 * Read the proxy's identity from a decoded xDS Node. Ports may arrive as numbers or strings (Envoy bootstrap
 * YAML users often quote them); a missing service falls back to Node.cluster, as Envoy's own convention.
 */
export function nodeInfoFromXdsNode(node: {
  id?: string;
  cluster?: string;
  metadata?: { fields?: Record<string, StructValue> } | null;
}): NodeInfo {
  const fields = node.metadata?.fields ?? {};
  const str = (k: string): string | undefined => {
    const v = fields[k];
    if (!v) return undefined;
    if (typeof v.stringValue === 'string' && v.stringValue !== '') return v.stringValue;
    if (typeof v.numberValue === 'number') return String(v.numberValue);
    return undefined;
  };
  const num = (k: string): number | undefined => {
    const s = str(k);
    const n = s === undefined ? NaN : Number(s);
    return Number.isInteger(n) && n >= 0 && n <= 65_535 ? n : undefined;
  };
  const service = str('service') ?? node.cluster ?? '';
  const appPort = num('appPort');
  return {
    id: node.id ?? '',
    service,
    namespace: str('namespace') ?? 'default',
    serviceAccount: str('serviceAccount') ?? service,
    ...(appPort !== undefined ? { appPort } : {}),
    inboundPort: num('inboundPort') ?? 15006,
    outboundPort: num('outboundPort') ?? 15001,
    ...(fields.workloadIdentity?.boolValue === true ? { workloadIdentity: true } : {}),
    // Istio's INTERCEPTION_MODE; TPROXY is not supported (the proxy would need IP_TRANSPARENT sockets).
    ...(str('interceptionMode') === 'REDIRECT' ? { interception: 'REDIRECT' as const } : {}),
  };
}
