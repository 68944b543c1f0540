// Translates an xDS Cluster into the internal ClusterModel (endpoints come inline for STATIC, from EDS otherwise).
import { isIP } from 'node:net';
import { endpointsFromLoadAssignment, overprovisioningFactorOf } from './endpoint.js';
import { DEFAULTS, type CircuitBreakersModel, type ClusterModel, type LbPolicy, type OutlierDetectionModel } from './model.js';
import { healthCheckOf } from './health-check.js';
import { upstreamTls } from './transport-socket.js';
import { decodeAny, decodeMessage, MESSAGE_NAMES, TYPE_URLS } from './protos.js';
import { durationMs, invalid, notEnforced, wrapped, type Plain } from './values.js';

export interface ClusterTranslation {
  /** For an EDS cluster, `endpoints` is empty until the snapshot joins in the ClusterLoadAssignment. */
  readonly model: ClusterModel;
  /** Name of the ClusterLoadAssignment to read (EDS clusters only). */
  readonly edsServiceName?: string;
}

const LB: Record<string, LbPolicy> = {
  ROUND_ROBIN: 'round_robin',
  LEAST_REQUEST: 'least_request',
  RING_HASH: 'ring_hash',
  RANDOM: 'random',
};

/** load_balancing_policy names we can honour, first supported wins (as Envoy and grpc-js-xds pick). */
const POLICY_TYPES: Record<string, LbPolicy> = {
  'envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin': 'round_robin',
  'envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest': 'least_request',
  'envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash': 'ring_hash',
  'envoy.extensions.load_balancing_policies.random.v3.Random': 'random',
};

function lbFromPolicyList(c: Plain): { policy: LbPolicy; config: Plain } {
  for (const p of c.load_balancing_policy?.policies ?? []) {
    const any = p.typed_extension_config?.typed_config;
    const name = String(any?.type_url ?? '').split('/').pop() ?? '';
    const policy = POLICY_TYPES[name];
    if (policy) return { policy, config: decodeAny<Plain>(any) };
  }
  return invalid('load_balancing_policy.policies: none of round_robin, least_request, ring_hash, random');
}

function http2Upstream(c: Plain): boolean {
  if (c.http2_protocol_options) return true;
  const any = c.typed_extension_protocol_options?.['envoy.extensions.upstreams.http.v3.HttpProtocolOptions'];
  if (!any) return false;
  if (any.type_url !== TYPE_URLS.HttpProtocolOptions) {
    invalid(`typed_extension_protocol_options: unexpected type ${any.type_url}`);
  }
  const opts = decodeAny<Plain>(any);
  return Boolean(opts.explicit_http_config?.http2_protocol_options);
}

/** A UInt32Value percentage of outlier_detection: Envoy's proto allows at most 100. */
function percent(w: Plain | undefined, fallback: number, field: string): number {
  const v = wrapped<number>(w, fallback);
  if (v > 100) invalid(`outlier_detection.${field}: ${v} is above 100`);
  return v;
}

function outlier(od: Plain | undefined): OutlierDetectionModel | undefined {
  if (!od) return undefined;
  const d = DEFAULTS.outlierDetection;
  const intervalMs = durationMs(od.interval, d.intervalMs, 'outlier_detection.interval');
  const baseEjectionTimeMs = durationMs(od.base_ejection_time, d.baseEjectionTimeMs, 'outlier_detection.base_ejection_time');
  // Envoy's proto rules: interval, base_ejection_time and max_ejection_time above 0, percentages at most 100.
  if (intervalMs === 0) invalid('outlier_detection.interval: must be above 0');
  if (baseEjectionTimeMs === 0) invalid('outlier_detection.base_ejection_time: must be above 0');
  // Unset, Envoy caps at 300 s or base_ejection_time, whichever is larger; set, it refuses one below the base.
  const maxEjectionTimeMs = durationMs(od.max_ejection_time, Math.max(d.maxEjectionTimeMs, baseEjectionTimeMs), 'outlier_detection.max_ejection_time');
  if (od.max_ejection_time && maxEjectionTimeMs === 0) invalid('outlier_detection.max_ejection_time: must be above 0');
  if (maxEjectionTimeMs < baseEjectionTimeMs) {
    invalid(`outlier_detection.max_ejection_time: ${maxEjectionTimeMs} ms is below base_ejection_time (${baseEjectionTimeMs} ms)`);
  }
  const sr = d.successRate;
  const fp = d.failurePercentage;
  return {
    consecutive5xx: wrapped<number>(od.consecutive_5xx, d.consecutive5xx),
    consecutiveGatewayFailure: wrapped<number>(od.consecutive_gateway_failure, d.consecutiveGatewayFailure),
    intervalMs,
    baseEjectionTimeMs,
    maxEjectionPercent: percent(od.max_ejection_percent, d.maxEjectionPercent, 'max_ejection_percent'),
    maxEjectionTimeMs,
    maxEjectionTimeJitterMs: durationMs(od.max_ejection_time_jitter, d.maxEjectionTimeJitterMs, 'outlier_detection.max_ejection_time_jitter'),
    enforcingConsecutive5xx: percent(od.enforcing_consecutive_5xx, d.enforcingConsecutive5xx, 'enforcing_consecutive_5xx'),
    // Envoy's default is 0: a raw xDS Cluster that wants gateway-failure ejections says so (the mesh compiler does).
    enforcingConsecutiveGatewayFailure: percent(
      od.enforcing_consecutive_gateway_failure,
      d.enforcingConsecutiveGatewayFailure,
      'enforcing_consecutive_gateway_failure',
    ),
    splitExternalLocalOriginErrors: od.split_external_local_origin_errors === true,
    consecutiveLocalOriginFailure: wrapped<number>(od.consecutive_local_origin_failure, d.consecutiveLocalOriginFailure),
    enforcingConsecutiveLocalOriginFailure: percent(
      od.enforcing_consecutive_local_origin_failure,
      d.enforcingConsecutiveLocalOriginFailure,
      'enforcing_consecutive_local_origin_failure',
    ),
    successRate: {
      minimumHosts: wrapped<number>(od.success_rate_minimum_hosts, sr.minimumHosts),
      requestVolume: wrapped<number>(od.success_rate_request_volume, sr.requestVolume),
      stdevFactor: wrapped<number>(od.success_rate_stdev_factor, sr.stdevFactor),
      enforcing: percent(od.enforcing_success_rate, sr.enforcing, 'enforcing_success_rate'),
    },
    failurePercentage: {
      threshold: percent(od.failure_percentage_threshold, fp.threshold, 'failure_percentage_threshold'),
      minimumHosts: wrapped<number>(od.failure_percentage_minimum_hosts, fp.minimumHosts),
      requestVolume: wrapped<number>(od.failure_percentage_request_volume, fp.requestVolume),
      enforcing: percent(od.enforcing_failure_percentage, fp.enforcing, 'enforcing_failure_percentage'),
    },
  };
}

/** circuit_breakers.thresholds.retry_budget: Envoy's defaults (20 %, at least 3) for what it leaves unset. */
function budget(b: Plain | undefined): CircuitBreakersModel['retryBudget'] {
  if (!b) return undefined;
  const d = DEFAULTS.retryBudget;
  const budgetPercent = b.budget_percent ? Number(b.budget_percent.value ?? 0) : d.budgetPercent;
  if (!Number.isFinite(budgetPercent) || budgetPercent < 0 || budgetPercent > 100) {
    invalid(`circuit_breakers.thresholds.retry_budget.budget_percent: ${budgetPercent} is not in 0..100`);
  }
  return { budgetPercent, minRetryConcurrency: wrapped<number>(b.min_retry_concurrency, d.minRetryConcurrency) };
}

/**
 * common_lb_config's panic threshold and locality-weighted switch (zone_aware_lb_config is not read: Pillion has no
 * local cluster to be zone-aware against). Envoy truncates the percent to a whole one.
 */
function commonLb(common: Plain | undefined): { healthyPanicThreshold?: number; localityWeighted?: true } {
  const out: { healthyPanicThreshold?: number; localityWeighted?: true } = {};
  if (!common) return out;
  if (common.healthy_panic_threshold) {
    const pct = Number(common.healthy_panic_threshold.value ?? 0);
    if (!(pct >= 0 && pct <= 100)) invalid(`common_lb_config.healthy_panic_threshold.value: ${pct} is not within 0..100`);
    out.healthyPanicThreshold = Math.floor(pct);
  }
  if (common.locality_weighted_lb_config) out.localityWeighted = true;
  return out;
}

/**
 * upstream_bind_config: the IPs to connect from, one per family at most (source_address, then
 * extra_source_addresses of the other family); ports must be 0: one fixed source port would serialize connects.
 */
function bindSources(b: Plain | undefined): string[] | undefined {
  if (b === undefined || b === null) return undefined;
  const one = (a: Plain | undefined, field: string): string => {
    if (a === undefined || a === null) invalid(`${field}: missing`);
    if (isIP(String(a.address ?? '')) === 0) invalid(`${field}.address: "${String(a.address ?? '')}" is not an IP address`);
    if ((a.port_value ?? 0) !== 0) invalid(`${field}.port_value: only 0 (any port) is supported`);
    return String(a.address);
  };
  const sources = [one(b.source_address as Plain | undefined, 'upstream_bind_config.source_address')];
  const extra = (b.extra_source_addresses ?? []) as Plain[];
  extra.forEach((e, i) => {
    const field = `upstream_bind_config.extra_source_addresses[${i}].address`;
    const s = one(e.address as Plain | undefined, field);
    // Envoy's rule: one source per family, so the upstream's family picks it.
    if (sources.some((x) => isIP(x) === isIP(s))) invalid(`${field}: a source address of this IP family is already given`);
    sources.push(s);
  });
  return sources;
}

/** Decode and validate a Cluster resource; throws ResourceInvalid with the field at fault. */
export function translateCluster(bytes: Uint8Array): ClusterTranslation {
  const c = decodeMessage<Plain>(MESSAGE_NAMES.Cluster, bytes);
  if (!c.name) invalid('name: missing');
  const type = c.type ?? 'STATIC';
  if (type !== 'STATIC' && type !== 'EDS' && type !== 'ORIGINAL_DST') invalid(`type: ${type} is not supported (STATIC, EDS or ORIGINAL_DST)`);
  // ORIGINAL_DST: the endpoint is each connection's original destination (transparent interception); Envoy
  // requires lb_policy CLUSTER_PROVIDED with it, and allows it with nothing else.
  const originalDst = type === 'ORIGINAL_DST';
  if (originalDst !== (c.lb_policy === 'CLUSTER_PROVIDED')) {
    invalid(originalDst ? `lb_policy: ${c.lb_policy ?? 'ROUND_ROBIN'} with type ORIGINAL_DST (expected CLUSTER_PROVIDED)` : 'lb_policy: CLUSTER_PROVIDED is not supported without type ORIGINAL_DST');
  }

  let lbPolicy: LbPolicy;
  let choiceCount: number = DEFAULTS.choiceCount;
  let minRingSize: number = DEFAULTS.minRingSize;
  let maxRingSize: number = DEFAULTS.maxRingSize;
  const lbEnum = originalDst ? 'ROUND_ROBIN' : (c.lb_policy ?? 'ROUND_ROBIN');
  if (lbEnum === 'LOAD_BALANCING_POLICY_CONFIG' || (c.lb_policy === undefined && c.load_balancing_policy)) {
    const { policy, config } = lbFromPolicyList(c);
    lbPolicy = policy;
    choiceCount = wrapped<number>(config.choice_count, choiceCount);
    minRingSize = wrapped<number>(config.minimum_ring_size, minRingSize);
    maxRingSize = wrapped<number>(config.maximum_ring_size, maxRingSize);
  } else {
    const p = LB[lbEnum];
    if (!p) invalid(`lb_policy: ${lbEnum} is not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM)`);
    lbPolicy = p;
    choiceCount = wrapped<number>(c.least_request_lb_config?.choice_count, choiceCount);
    minRingSize = wrapped<number>(c.ring_hash_lb_config?.minimum_ring_size, minRingSize);
    maxRingSize = wrapped<number>(c.ring_hash_lb_config?.maximum_ring_size, maxRingSize);
  }
  if (choiceCount < 2) invalid('least_request_lb_config.choice_count: must be at least 2');
  // Envoy caps both ring sizes at 8M entries (its proto rules); a larger ring is refused there too.
  if (maxRingSize > DEFAULTS.maxRingSize) invalid(`ring_hash_lb_config.maximum_ring_size: ${maxRingSize} is above ${DEFAULTS.maxRingSize}`);
  if (minRingSize < 1 || minRingSize > maxRingSize) invalid('ring_hash_lb_config.minimum_ring_size: must be 1..maximum_ring_size');

  // Envoy reads the DEFAULT priority's thresholds; HIGH priority traffic is not modelled.
  const th = (c.circuit_breakers?.thresholds ?? []).find((t: Plain) => (t.priority ?? 'DEFAULT') === 'DEFAULT') ?? {};
  const d = DEFAULTS.circuitBreakers;
  const connectTimeoutMs = durationMs(c.connect_timeout, DEFAULTS.connectTimeoutMs, 'connect_timeout');
  if (connectTimeoutMs === 0) invalid('connect_timeout: must be above 0');

  const edsServiceName = type === 'EDS' ? (c.eds_cluster_config?.service_name || c.name) : undefined;
  const od = outlier(c.outlier_detection);
  const retryBudget = budget(th.retry_budget);
  const staticFactor = type === 'STATIC' ? overprovisioningFactorOf(c.load_assignment, 'load_assignment.policy') : undefined;
  const hc = healthCheckOf(c.health_checks, c.name);
  const tls = upstreamTls(c.transport_socket, 'transport_socket');
  const sourceAddresses = bindSources(c.upstream_bind_config);
  const od0 = c.original_dst_lb_config as Plain | undefined;
  if (od0 !== undefined && od0 !== null) {
    // The host comes from the connection's original destination only: a header any client can set is not read.
    if (od0.use_http_header === true) notEnforced('original_dst_lb_config.use_http_header', 'the host is the connection\'s original destination; x-envoy-original-dst-host is not read');
    if (od0.upstream_port_override !== undefined && od0.upstream_port_override !== null) notEnforced('original_dst_lb_config.upstream_port_override', 'the original destination\'s own port is dialed');
  }
  const model: ClusterModel = {
    name: c.name,
    connectTimeoutMs,
    lbPolicy,
    choiceCount,
    ringHash: { minRingSize, maxRingSize },
    protocol: http2Upstream(c) ? 'http2' : 'http1',
    circuitBreakers: {
      maxConnections: wrapped<number>(th.max_connections, d.maxConnections),
      maxPendingRequests: wrapped<number>(th.max_pending_requests, d.maxPendingRequests),
      maxRequests: wrapped<number>(th.max_requests, d.maxRequests),
      maxRetries: wrapped<number>(th.max_retries, d.maxRetries),
      ...(retryBudget ? { retryBudget } : {}),
    },
    ...(od ? { outlierDetection: od } : {}),
    ...(hc ? { healthCheck: hc } : {}),
    maxIdleConnectionsPerEndpoint: DEFAULTS.maxIdleConnectionsPerEndpoint,
    ...(edsServiceName !== undefined ? { edsServiceName } : {}),
    endpoints: type === 'STATIC' ? endpointsFromLoadAssignment(c.load_assignment, 'load_assignment.endpoints') : [],
    ...commonLb(c.common_lb_config),
    ...(staticFactor !== undefined ? { overprovisioningFactor: staticFactor } : {}),
    ...(tls ? { tls } : {}),
    ...(originalDst ? { originalDst } : {}),
    ...(sourceAddresses !== undefined ? { sourceAddresses } : {}),
  };
  return edsServiceName !== undefined ? { model, edsServiceName } : { model };
}
