// The proxy's internal config model: what the data path reads. Built only by the translators in this
// folder from xDS resources; immutable once built (a change builds a new snapshot and swaps one reference).
// Durations are milliseconds; 0 means "no limit" wherever a timeout is concerned.
import type { JwtAuthnModel, RbacFilterModel } from '../authz/model.js';
import type { SecretModel } from '../tls/secrets.js';

export type LbPolicy = 'least_request' | 'round_robin' | 'random' | 'ring_hash';
export type UpstreamProtocol = 'http1' | 'http2';
export type Direction = 'inbound' | 'outbound';

export interface ListenerModel {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly direction: Direction;
  /** Chain for HTTP traffic. With `tcp` also set, each connection is sniffed (HTTP/1 method or HTTP/2 preface → http). */
  readonly http?: HttpChainModel;
  /** Chain for opaque TCP: the only chain, or the fallback when sniffing finds no HTTP. */
  readonly tcp?: TcpChainModel;
  /**
   * Listener listener_filters_timeout (Envoy's default 15 s): how long a connection on a listener that sniffs
   * may stay silent. With a TCP chain, silence means a server-first protocol and TCP takes the connection
   * after a second; without one, the connection is closed at this deadline (0 = wait for ever).
   */
  readonly firstByteTimeoutMs: number;
  /**
   * Listener continue_on_listener_filters_timeout: at firstByteTimeoutMs a silent connection goes to the TCP chain
   * (a server-first protocol: MySQL, SMTP) instead of being closed. Without it, a listener with a TCP chain still
   * falls back to TCP after 1 s (the fixed default before this field was read).
   */
  readonly continueOnFiltersTimeout?: boolean;
  /**
   * TLS termination (filter chains with a DownstreamTlsContext transport_socket); absent = plaintext only. With
   * `plaintext` also true the port takes both, told apart by the first bytes (Envoy's tls_inspector matching
   * filter chains on transport_protocol "tls" vs "raw_buffer": Istio's PERMISSIVE).
   */
  readonly tls?: DownstreamTlsModel;
  /**
   * Listener use_original_dst: connections iptables redirected here are handed to the listener bound (or not
   * bound: bindToPort false) to their original destination, else served by this one's chains (transparent
   * interception; needs the native helper, src/listener/original-dst.ts).
   */
  readonly useOriginalDst: boolean;
  /** Listener bind_to_port (default true); false = reached only by a use_original_dst listener's hand-off. */
  readonly bindToPort: boolean;
}

/** Where a TLS secret comes from: the SecretStore by SDS name, or inline in the resource. */
export type SecretSourceModel =
  | { readonly kind: 'sds'; readonly name: string }
  | { readonly kind: 'inline'; readonly secret: SecretModel };

/** One match_typed_subject_alt_names entry (Envoy's SubjectAltNameMatcher with its StringMatcher). */
export interface SanMatcherModel {
  readonly sanType: 'URI' | 'DNS' | 'EMAIL' | 'IP_ADDRESS';
  readonly match: 'exact' | 'prefix' | 'suffix' | 'contains';
  readonly value: string;
  readonly ignoreCase: boolean;
}

/** Envoy's CommonTlsContext, as far as Pillion reads it. */
export interface TlsContextModel {
  /** The certificate and key presented; null = none (a client without one cannot do mTLS). */
  readonly certificate: SecretSourceModel | null;
  /** The CA bundle peers are verified against; null = peers are not verified (Envoy's behaviour too). */
  readonly validation: SecretSourceModel | null;
  /** The peer certificate must have a SAN matching one of these (empty = any certificate the CA signed). */
  readonly sanMatchers: readonly SanMatcherModel[];
  readonly alpn: readonly string[];
  /** CommonTlsContext.tls_params; null = TLS 1.2 - 1.3, Envoy's default cipher suites, Node's default curves. */
  readonly params: TlsParamsModel | null;
}

/** What TlsParameters asks for, as OpenSSL takes it. */
export interface TlsParamsModel {
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
  readonly maxVersion: 'TLSv1.2' | 'TLSv1.3';
  /** TLS 1.2 cipher suites (OpenSSL names, in order); null = Envoy's default list. TLS 1.3's are not configurable. */
  readonly cipherSuites: readonly string[] | null;
  /** ECDHE groups (OpenSSL names, in order); null = Node's default. */
  readonly ecdhCurves: readonly string[] | null;
}

export interface UpstreamTlsModel {
  readonly context: TlsContextModel;
  /** SNI to send; '' sends none. */
  readonly sni: string;
}

export interface DownstreamTlsModel {
  readonly context: TlsContextModel;
  readonly requireClientCertificate: boolean;
  /** Plaintext is accepted on the same port too (PERMISSIVE). */
  readonly plaintext: boolean;
}

export interface HttpChainModel {
  readonly statPrefix: string;
  /** Name of the RouteConfiguration (RDS or inline; inline ones are also put into the snapshot's routeConfigs). */
  readonly routeConfigName: string;
  /** HttpConnectionManager codec_type: AUTO accepts both HTTP/1.1 and HTTP/2 prior knowledge. */
  readonly codec: 'auto' | 'http1' | 'http2';
  /** Whole-request timeout from HCM request_timeout (0 = none). */
  readonly requestTimeoutMs: number;
  /** Idle timeout of a stream (0 = none). */
  readonly streamIdleTimeoutMs: number;
  /** Idle timeout of a downstream connection (HCM common_http_protocol_options.idle_timeout; 0 = none). */
  readonly idleTimeoutMs: number;
  /** max_request_headers_kb: larger request heads get 431. */
  readonly maxRequestHeadersKb: number;
  /**
   * HCM request_headers_timeout: a request head (and a connection's first one, counted from accept) must arrive
   * within this (0 = none). Envoy has none by default; ours is 10 s, so a slowloris client cannot hold a
   * connection with a byte a second.
   */
  readonly requestHeadersTimeoutMs: number;
  /** HCM http2_protocol_options.max_concurrent_streams: SETTINGS_MAX_CONCURRENT_STREAMS per downstream connection. */
  readonly maxConcurrentStreams: number;
  /** HCM common_http_protocol_options.max_headers_count (Envoy's default 100): more request header lines get 431. */
  readonly maxHeadersCount: number;
  /** Set x-request-id when the request has none (HCM generate_request_id, default true). */
  readonly generateRequestId: boolean;
  /** HCM http_filters before the router, in order (the router itself is implied: it is always last). */
  readonly httpFilters: readonly HttpFilterModel[];
}

/** Envoy's envoy.filters.http.fault (HTTPFault), for chaos testing. Shares are per million requests. */
export interface FaultModel {
  /** Fixed delay before the request goes on (0 = no delay fault). */
  readonly delayMs: number;
  readonly delayPerMillion: number;
  /** Abort with this HTTP status (0 = no HTTP abort), or with this gRPC status for gRPC requests. */
  readonly abortHttpStatus: number;
  readonly abortGrpcStatus: number | undefined;
  readonly abortPerMillion: number;
  /** max_active_faults: delays in progress at once (0 = no limit). */
  readonly maxActiveFaults: number;
}

/** Envoy's envoy.filters.http.local_ratelimit (LocalRateLimit): a token bucket per filter config. */
export interface LocalRateLimitModel {
  readonly statPrefix: string;
  readonly maxTokens: number;
  readonly tokensPerFill: number;
  readonly fillIntervalMs: number;
  /** filter_enabled / filter_enforced shares per million (Envoy: unset means 0, the filter does nothing). */
  readonly enabledPerMillion: number;
  readonly enforcedPerMillion: number;
  /** The status of a limited request (default 429). */
  readonly status: number;
  /** grpc-status for gRPC callers: 14 UNAVAILABLE, or 8 RESOURCE_EXHAUSTED (rate_limited_as_resource_exhausted). */
  readonly grpcStatus: number;
}

export type FilterConfigModel =
  | { readonly kind: 'fault'; readonly config: FaultModel }
  | { readonly kind: 'local_ratelimit'; readonly config: LocalRateLimitModel | null }
  | { readonly kind: 'rbac'; readonly config: RbacFilterModel }
  | { readonly kind: 'jwt_authn'; readonly config: JwtAuthnModel };

/** One HTTP filter of a chain: its name (per-route configs are keyed by it) and its listener-level config. */
export type HttpFilterModel = FilterConfigModel & { readonly name: string };

export interface TcpChainModel {
  readonly statPrefix: string;
  readonly cluster: string;
  /** TcpProxy idle_timeout (Envoy default 1h; 0 = none). */
  readonly idleTimeoutMs: number;
  /** envoy.filters.network.rbac filters before the tcp_proxy, in order (absent: none). */
  readonly rbac?: readonly RbacFilterModel[];
}

export interface RouteConfigModel {
  readonly name: string;
  readonly virtualHosts: readonly VirtualHostModel[];
}

export interface VirtualHostModel {
  readonly name: string;
  /** Lowercase. Exact names, `*.suffix`, `prefix*` or `*`; an entry without a port also matches the host with any port. */
  readonly domains: readonly string[];
  readonly routes: readonly RouteModel[];
}

export interface RouteModel {
  readonly name: string;
  readonly match: RouteMatchModel;
  readonly action: RouteActionModel;
  /**
   * Route direct_response: answered by the proxy with this status and body (Istio's REGISTRY_ONLY `block_all`
   * route: 502), after the HTTP filters; `action` is then NO_ROUTE_ACTION.
   */
  readonly directResponse?: { readonly status: number; readonly body: string };
  /** typed_per_filter_config of the route (over its virtual host's), by filter name; absent when none. */
  readonly filterConfigs?: ReadonlyMap<string, FilterConfigModel>;
}

export interface RouteMatchModel {
  readonly kind: 'prefix' | 'path';
  readonly value: string;
  readonly caseSensitive: boolean;
  readonly headers: readonly HeaderMatcherModel[];
}

export interface HeaderMatcherModel {
  /** Lowercase header name; `:authority`, `:method`, `:path` are matched on the request's values too. */
  readonly name: string;
  readonly kind: 'exact' | 'prefix' | 'suffix' | 'contains' | 'present';
  readonly value: string;
  readonly invert: boolean;
}

export interface WeightedClusterModel {
  readonly name: string;
  readonly weight: number;
}

export type HashPolicyModel =
  | { readonly kind: 'header'; readonly name: string; readonly terminal: boolean }
  | { readonly kind: 'cookie'; readonly name: string; readonly terminal: boolean }
  | { readonly kind: 'source_ip'; readonly terminal: boolean };

export interface RetryPolicyModel {
  readonly numRetries: number;
  /** Each attempt's own deadline (0 = only the route timeout); a per-try timeout counts as a 504. */
  readonly perTryTimeoutMs: number;
  /** Envoy retry_on conditions: 5xx, gateway-error, reset, connect-failure, retriable-status-codes, ... */
  readonly retryOn: readonly string[];
  /** retryOn as RETRY_ON bits (src/http/retry-policy.ts), parsed once. */
  readonly conditions: number;
  /**
   * Most request-body bytes held so the body can be sent again (Route/VirtualHost per_request_buffer_limit_bytes;
   * ours defaults to 64 KiB). A longer body goes upstream once: it is never retried.
   */
  readonly bufferLimitBytes: number;
  readonly retriableStatusCodes: readonly number[];
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

export interface RouteActionModel {
  /** One entry for a plain `cluster`, several for weighted_clusters. */
  readonly clusters: readonly WeightedClusterModel[];
  readonly totalWeight: number;
  /** RouteAction.timeout: Envoy's default is 15 s; 0 disables. */
  readonly timeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly retry?: RetryPolicyModel;
  /** HedgePolicy.hedge_on_per_try_timeout: at the per-try timeout, a second try starts beside the first. */
  readonly hedgeOnPerTryTimeout: boolean;
  readonly hashPolicies: readonly HashPolicyModel[];
  readonly prefixRewrite?: string;
  readonly hostRewrite?: string;
}

export interface CircuitBreakersModel {
  readonly maxConnections: number;
  readonly maxPendingRequests: number;
  readonly maxRequests: number;
  readonly maxRetries: number;
  /**
   * Envoy's retry_budget: retries in flight at most budgetPercent of the cluster's active requests, and never
   * fewer than minRetryConcurrency. When set, it replaces maxRetries.
   */
  readonly retryBudget?: { readonly budgetPercent: number; readonly minRetryConcurrency: number };
}

export interface OutlierDetectionModel {
  readonly consecutive5xx: number;
  readonly consecutiveGatewayFailure: number;
  readonly intervalMs: number;
  readonly baseEjectionTimeMs: number;
  readonly maxEjectionPercent: number;
  /** Envoy's max_ejection_time; the core caps at max(this, baseEjectionTimeMs), as Envoy's default does. */
  readonly maxEjectionTimeMs: number;
  /** Envoy's max_ejection_time_jitter: up to this many ms added at random to each ejection. */
  readonly maxEjectionTimeJitterMs: number;
  /** The enforcing_* fields: the percent chance a detected outlier is really ejected (0..100). */
  readonly enforcingConsecutive5xx: number;
  readonly enforcingConsecutiveGatewayFailure: number;
  /** Envoy's split_external_local_origin_errors: connect failures, resets and timeouts count on their own. */
  readonly splitExternalLocalOriginErrors: boolean;
  readonly consecutiveLocalOriginFailure: number;
  readonly enforcingConsecutiveLocalOriginFailure: number;
  readonly successRate: SuccessRateModel;
  readonly failurePercentage: FailurePercentageModel;
}

/** The interval success-rate detector: ejects endpoints below mean - stdev × stdevFactor / 1000. */
export interface SuccessRateModel {
  readonly minimumHosts: number;
  readonly requestVolume: number;
  /** In thousandths, as Envoy's success_rate_stdev_factor (1900 = 1.9). */
  readonly stdevFactor: number;
  readonly enforcing: number;
}

/** The interval failure-percentage detector: ejects endpoints whose failures are >= threshold percent. */
export interface FailurePercentageModel {
  readonly threshold: number;
  readonly minimumHosts: number;
  readonly requestVolume: number;
  readonly enforcing: number;
}

/** A half-open range of HTTP statuses [start, end), as Envoy's Int64Range. */
export interface StatusRange {
  readonly start: number;
  readonly end: number;
}

/** Active health checking of a cluster's endpoints (Envoy's HealthCheck; one per cluster, as Envoy allows). */
export interface HealthCheckModel {
  /** Per probe: connect plus, for HTTP, the response's status line. */
  readonly timeoutMs: number;
  readonly intervalMs: number;
  /** Interval while the cluster has carried no traffic yet (Envoy: no_traffic_interval, default 60 s). */
  readonly noTrafficIntervalMs: number;
  /** Added to each interval: a random 0..intervalJitterMs, plus a random share of intervalJitterPercent. */
  readonly intervalJitterMs: number;
  readonly intervalJitterPercent: number;
  /** The first probe of an endpoint waits a random 0..initialJitterMs. */
  readonly initialJitterMs: number;
  readonly unhealthyThreshold: number;
  readonly healthyThreshold: number;
  /** An HTTP GET when set; a TCP connect when absent. */
  readonly http?: {
    readonly path: string;
    /** The Host header: the configured host, or the cluster name (Envoy's default). */
    readonly host: string;
    readonly expectedStatuses: readonly StatusRange[];
    /** Statuses that count toward unhealthyThreshold instead of failing the endpoint at once. */
    readonly retriableStatuses: readonly StatusRange[];
  };
}

export interface EndpointModel {
  readonly address: string;
  readonly port: number;
  readonly weight: number;
  readonly region: string;
  readonly zone: string;
  /** EDS health_status: only HEALTHY and UNKNOWN endpoints take traffic. */
  readonly healthy: boolean;
  /** LocalityLbEndpoints.priority: 0 is used first; higher levels take the spill as lower ones lose health (default 0). */
  readonly priority?: number;
  /** LocalityLbEndpoints.load_balancing_weight of the endpoint's locality; 0 or absent = none (default none). */
  readonly localityWeight?: number;
}

export interface ClusterModel {
  readonly name: string;
  readonly connectTimeoutMs: number;
  readonly lbPolicy: LbPolicy;
  /** least_request choice_count (Envoy default 2). */
  readonly choiceCount: number;
  readonly ringHash: { readonly minRingSize: number; readonly maxRingSize: number };
  /** Protocol spoken to the endpoints for HTTP traffic. */
  readonly protocol: UpstreamProtocol;
  readonly circuitBreakers: CircuitBreakersModel;
  readonly outlierDetection?: OutlierDetectionModel;
  readonly healthCheck?: HealthCheckModel;
  /** Upstream keep-alive: idle sockets kept per endpoint (HTTP/1.1). */
  readonly maxIdleConnectionsPerEndpoint: number;
  /** EDS service name when endpoints come from a ClusterLoadAssignment (defaults to the cluster name). */
  readonly edsServiceName?: string;
  readonly endpoints: readonly EndpointModel[];
  /** ClusterLoadAssignment.policy.overprovisioning_factor in percent (Envoy's default 140). */
  readonly overprovisioningFactor?: number;
  /** common_lb_config.healthy_panic_threshold in percent (Envoy's default 50; 0 disables panic). */
  readonly healthyPanicThreshold?: number;
  /** common_lb_config.locality_weighted_lb_config is set: pick a locality by its weight, then an endpoint in it. */
  readonly localityWeighted?: boolean;
  /** Originate TLS to the endpoints (transport_socket with an UpstreamTlsContext); absent = plaintext. */
  readonly tls?: UpstreamTlsModel;
  /**
   * Envoy's ORIGINAL_DST type: no endpoints of its own; a TCP connection goes to where the downstream connection
   * was going before iptables redirected it (PassthroughCluster). HTTP routes to it answer 503 (not supported).
   */
  readonly originalDst?: boolean;
  /**
   * Cluster upstream_bind_config (source_address, extra_source_addresses): the local addresses its connections
   * are made from, at most one per IP family, the upstream's family picks (Istio's inbound passthrough dials from
   * 127.0.0.6 or ::6, which the pod's iptables rules let through unredirected).
   */
  readonly sourceAddresses?: readonly string[];
}

/** Everything a proxy runs from, at one version. */
export interface ConfigSnapshot {
  readonly version: string;
  readonly listeners: ReadonlyMap<string, ListenerModel>;
  readonly routeConfigs: ReadonlyMap<string, RouteConfigModel>;
  readonly clusters: ReadonlyMap<string, ClusterModel>;
}

export const EMPTY_SNAPSHOT: ConfigSnapshot = {
  version: '',
  listeners: new Map(),
  routeConfigs: new Map(),
  clusters: new Map(),
};

/** Defaults that follow Envoy's (documented in the README's config reference). */
export const DEFAULTS = {
  connectTimeoutMs: 5_000,
  routeTimeoutMs: 15_000,
  tcpIdleTimeoutMs: 3_600_000,
  maxRequestHeadersKb: 60,
  requestHeadersTimeoutMs: 10_000,
  maxConcurrentStreams: 1024,
  maxHeadersCount: 100,
  listenerFiltersTimeoutMs: 15_000,
  choiceCount: 2,
  minRingSize: 1024,
  maxRingSize: 8_388_608,
  maxIdleConnectionsPerEndpoint: 64,
  overprovisioningFactor: 140,
  healthyPanicThreshold: 50,
  circuitBreakers: { maxConnections: 1024, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 3 },
  /** Envoy's retry_budget defaults, when a budget is set without them. */
  retryBudget: { budgetPercent: 20, minRetryConcurrency: 3 },
  /** Request bytes held for a retry; Envoy holds up to the connection buffer limit (1 MiB), Linkerd 64 KiB. */
  retryBufferLimitBytes: 65_536,
  outlierDetection: {
    consecutive5xx: 5,
    consecutiveGatewayFailure: 5,
    intervalMs: 10_000,
    baseEjectionTimeMs: 30_000,
    maxEjectionPercent: 10,
    maxEjectionTimeMs: 300_000,
    maxEjectionTimeJitterMs: 0,
    enforcingConsecutive5xx: 100,
    // Envoy's default: gateway-failure runs are detected but not acted on unless enforcing says so.
    enforcingConsecutiveGatewayFailure: 0,
    splitExternalLocalOriginErrors: false,
    consecutiveLocalOriginFailure: 5,
    enforcingConsecutiveLocalOriginFailure: 100,
    successRate: { minimumHosts: 5, requestVolume: 100, stdevFactor: 1900, enforcing: 100 },
    // Envoy's default: off (enforcing 0) unless asked for.
    failurePercentage: { threshold: 85, minimumHosts: 5, requestVolume: 50, enforcing: 0 },
  },
  /**
   * Envoy requires timeout, interval and both thresholds (no defaults); these are the mesh config's, chosen like a
   * Kubernetes readiness probe with one more success to come back. noTrafficIntervalMs is Envoy's default.
   */
  healthCheck: {
    timeoutMs: 1_000,
    intervalMs: 10_000,
    unhealthyThreshold: 3,
    healthyThreshold: 2,
    noTrafficIntervalMs: 60_000,
  },
} as const;

/** The action of a route that has none (direct_response): no cluster, no timeout. */
export const NO_ROUTE_ACTION: RouteActionModel = Object.freeze({
  clusters: [],
  totalWeight: 0,
  timeoutMs: 0,
  idleTimeoutMs: 0,
  hedgeOnPerTryTimeout: false,
  hashPolicies: [],
});
