// Translates an xDS RouteConfiguration (RDS, or inline in an HttpConnectionManager) into RouteConfigModel.
import {
  DEFAULTS,
  NO_ROUTE_ACTION,
  type FilterConfigModel,
  type HashPolicyModel,
  type HeaderMatcherModel,
  type RetryPolicyModel,
  type RouteActionModel,
  type RouteConfigModel,
  type RouteModel,
  type VirtualHostModel,
} from './model.js';
import { decodeMessage, MESSAGE_NAMES } from './protos.js';
import { durationMs, invalid, MAX_TIMER_MS, notEnforced, wrapped, type Plain } from './values.js';
import { parseRetryOn, UNSUPPORTED_RETRY_ON } from '../http/router/retry-policy.js';
import { perFilterConfigs } from './http-filters.js';

// Envoy's route retry backoff defaults: base 25 ms, max 10 × base.
const DEFAULT_BACKOFF_BASE_MS = 25;

export function headerMatcher(h: Plain, field: string): HeaderMatcherModel {
  if (!h.name) invalid(`${field}.name: missing`);
  const name = String(h.name).toLowerCase();
  const invert = Boolean(h.invert_match);
  const base = { name, invert };
  if (h.string_match) {
    const sm = h.string_match;
    if (sm.ignore_case) invalid(`${field}.string_match.ignore_case: not supported`);
    for (const kind of ['exact', 'prefix', 'suffix', 'contains'] as const) {
      if (sm[kind] !== undefined) return { ...base, kind, value: String(sm[kind]) };
    }
    return invalid(`${field}.string_match: no supported pattern (exact, prefix, suffix, contains)`);
  }
  if (h.exact_match !== undefined) return { ...base, kind: 'exact', value: String(h.exact_match) };
  if (h.prefix_match !== undefined) return { ...base, kind: 'prefix', value: String(h.prefix_match) };
  if (h.suffix_match !== undefined) return { ...base, kind: 'suffix', value: String(h.suffix_match) };
  if (h.contains_match !== undefined) return { ...base, kind: 'contains', value: String(h.contains_match) };
  // present_match, or no specifier at all: Envoy treats an empty matcher as "header is present".
  if (h.present_match === false) return { ...base, kind: 'present', value: '', invert: !invert };
  return { ...base, kind: 'present', value: '' };
}

function retryPolicy(r: Plain | undefined, bufferLimitBytes: number, field: string): RetryPolicyModel | undefined {
  if (!r) return undefined;
  const retryOn = String(r.retry_on ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const { conditions, unknown } = parseRetryOn(retryOn);
  // Envoy ignores conditions it does not know; so do we, but out loud.
  for (const name of unknown) {
    notEnforced(`${field}.retry_on: ${name}`, UNSUPPORTED_RETRY_ON.has(name) ? 'this condition never triggers a retry' : 'not a retry_on condition Envoy defines');
  }
  const base = durationMs(r.retry_back_off?.base_interval, DEFAULT_BACKOFF_BASE_MS, `${field}.retry_back_off.base_interval`);
  if (r.retry_back_off && base === 0) invalid(`${field}.retry_back_off.base_interval: must be above 0`);
  // The default max (10 × base) is ours to bound: a base near the longest timer must not make it overflow.
  const max = durationMs(r.retry_back_off?.max_interval, Math.min(base * 10, MAX_TIMER_MS), `${field}.retry_back_off.max_interval`);
  if (max < base) invalid(`${field}.retry_back_off.max_interval: must be at least base_interval`);
  return {
    numRetries: wrapped<number>(r.num_retries, 1),
    perTryTimeoutMs: durationMs(r.per_try_timeout, 0, `${field}.per_try_timeout`),
    retryOn,
    conditions,
    bufferLimitBytes,
    retriableStatusCodes: (r.retriable_status_codes ?? []).map(Number),
    backoffBaseMs: base,
    backoffMaxMs: max,
  };
}

/** HedgePolicy: only hedging on the per-try timeout is implemented; the rest is said, not silently taken. */
function hedgeOnPerTryTimeout(h: Plain | undefined, field: string): boolean {
  if (!h) return false;
  if (wrapped<number>(h.initial_requests, 1) > 1) notEnforced(`${field}.initial_requests`, 'one request is sent at first');
  if (Number(h.additional_request_chance?.numerator ?? 0) > 0) notEnforced(`${field}.additional_request_chance`, 'no additional request is sent');
  return Boolean(h.hedge_on_per_try_timeout);
}

/** per_request_buffer_limit_bytes: what a retry may hold of a request body. 16 MiB at most: it is per request. */
function bufferLimit(w: Plain | undefined, fallback: number, field: string): number {
  const bytes = wrapped<number>(w, fallback);
  if (!Number.isInteger(bytes) || bytes < 0 || bytes > 16 * 1024 * 1024) invalid(`${field}: ${bytes} is not in 0..16777216`);
  return bytes;
}

function hashPolicy(h: Plain, field: string): HashPolicyModel {
  const terminal = Boolean(h.terminal);
  if (h.header) {
    if (!h.header.header_name) invalid(`${field}.header.header_name: missing`);
    return { kind: 'header', name: String(h.header.header_name).toLowerCase(), terminal };
  }
  if (h.cookie) {
    if (!h.cookie.name) invalid(`${field}.cookie.name: missing`);
    return { kind: 'cookie', name: String(h.cookie.name), terminal };
  }
  if (h.connection_properties?.source_ip) return { kind: 'source_ip', terminal };
  return invalid(`${field}: no supported policy (header, cookie, connection_properties.source_ip)`);
}

/** What a route inherits from its virtual host. */
interface VhostDefaults {
  readonly retryPolicy: Plain | undefined;
  readonly hedgePolicy: Plain | undefined;
  readonly bufferLimitBytes: number;
  readonly filterConfigs: ReadonlyMap<string, FilterConfigModel> | undefined;
}

function routeAction(a: Plain, vhost: VhostDefaults, bufferLimitBytes: number, field: string): RouteActionModel {
  let clusters: { name: string; weight: number }[];
  if (a.cluster !== undefined) {
    if (!a.cluster) invalid(`${field}.cluster: empty`);
    clusters = [{ name: a.cluster, weight: 1 }];
  } else if (a.weighted_clusters) {
    clusters = (a.weighted_clusters.clusters ?? []).map((c: Plain, i: number) => {
      if (!c.name) invalid(`${field}.weighted_clusters.clusters[${i}].name: missing`);
      return { name: String(c.name), weight: wrapped<number>(c.weight, 0) };
    });
    if (clusters.length === 0) invalid(`${field}.weighted_clusters.clusters: empty`);
  } else if (a.cluster_header !== undefined) {
    return invalid(`${field}.cluster_header: not supported`);
  } else {
    return invalid(`${field}: no cluster (cluster or weighted_clusters)`);
  }
  const totalWeight = clusters.reduce((sum, c) => sum + c.weight, 0);
  if (totalWeight === 0) invalid(`${field}.weighted_clusters: weights sum to 0`);
  const retry = retryPolicy(a.retry_policy ?? vhost.retryPolicy, bufferLimitBytes, `${field}.retry_policy`);
  return {
    clusters,
    totalWeight,
    timeoutMs: durationMs(a.timeout, DEFAULTS.routeTimeoutMs, `${field}.timeout`),
    hedgeOnPerTryTimeout: hedgeOnPerTryTimeout(a.hedge_policy ?? vhost.hedgePolicy, `${field}.hedge_policy`),
    idleTimeoutMs: durationMs(a.idle_timeout, 0, `${field}.idle_timeout`),
    ...(retry ? { retry } : {}),
    hashPolicies: (a.hash_policy ?? []).map((h: Plain, i: number) => hashPolicy(h, `${field}.hash_policy[${i}]`)),
    ...(a.prefix_rewrite ? { prefixRewrite: String(a.prefix_rewrite) } : {}),
    ...(a.host_rewrite_literal ? { hostRewrite: String(a.host_rewrite_literal) } : {}),
  };
}

/** Envoy's DirectResponseAction: a status of 200-599 and an inline body (a file or env body is refused). */
function directResponse(d: Plain, field: string): { status: number; body: string } {
  const status = Number(d.status ?? 0);
  if (!Number.isInteger(status) || status < 200 || status > 599) invalid(`${field}.status: ${status} is not within 200..599`);
  const b = d.body as Plain | undefined;
  if (b !== undefined && b !== null && b.inline_string === undefined && b.inline_bytes === undefined) invalid(`${field}.body: only inline_string and inline_bytes are supported`);
  const body = b?.inline_string !== undefined ? String(b.inline_string) : b?.inline_bytes !== undefined ? utf8Body(b.inline_bytes as Uint8Array, `${field}.body.inline_bytes`) : '';
  // Envoy's own limit on an inline direct-response body (max_direct_response_body_size_bytes' default), in bytes.
  const bytes = Buffer.byteLength(body, 'utf8');
  if (bytes > 4096) invalid(`${field}.body: ${bytes} bytes is over 4096`);
  return { status, body };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Bodies are served as text: bytes that are not UTF-8 would go out changed (U+FFFD), so they are refused instead. */
function utf8Body(bytes: Uint8Array, field: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return invalid(`${field}: not valid UTF-8; Pillion serves a direct-response body as text, so binary bodies are refused rather than altered`);
  }
}

function routeMatch(m: Plain, kind: 'prefix' | 'path', field: string): RouteModel['match'] {
  return {
    kind,
    value: String(m[kind]),
    caseSensitive: wrapped<boolean>(m.case_sensitive, true),
    headers: (m.headers ?? []).map((h: Plain, i: number) => headerMatcher(h, `${field}.match.headers[${i}]`)),
  };
}

function route(r: Plain, vhost: VhostDefaults, field: string): RouteModel {
  const m = r.match;
  if (!m) invalid(`${field}.match: missing`);
  let kind: 'prefix' | 'path';
  if (m.prefix !== undefined) kind = 'prefix';
  else if (m.path !== undefined) kind = 'path';
  else return invalid(`${field}.match: no supported path specifier (prefix, path)`);
  const direct = r.direct_response === undefined || r.direct_response === null ? undefined : directResponse(r.direct_response, `${field}.direct_response`);
  if (!r.route && direct === undefined) invalid(`${field}.route: missing (redirect is not supported)`);
  const filterConfigs = perFilterConfigs(r.typed_per_filter_config, vhost.filterConfigs, `${field}.typed_per_filter_config`);
  if (direct !== undefined) {
    return {
      ...(filterConfigs !== undefined ? { filterConfigs } : {}),
      name: String(r.name ?? ''),
      match: routeMatch(m, kind, field),
      action: NO_ROUTE_ACTION,
      directResponse: direct,
    };
  }
  return {
    ...(filterConfigs !== undefined ? { filterConfigs } : {}),
    name: String(r.name ?? ''),
    match: {
      kind,
      value: String(m[kind]),
      caseSensitive: wrapped<boolean>(m.case_sensitive, true),
      headers: (m.headers ?? []).map((h: Plain, i: number) => headerMatcher(h, `${field}.match.headers[${i}]`)),
    },
    action: routeAction(r.route, vhost, bufferLimit(r.per_request_buffer_limit_bytes, vhost.bufferLimitBytes, `${field}.per_request_buffer_limit_bytes`), `${field}.route`),
  };
}

/** Translate an already-decoded RouteConfiguration (as found inline in an HttpConnectionManager). */
export function routeConfigFromPlain(rc: Plain, field = ''): RouteConfigModel {
  const at = (s: string) => (field ? `${field}.${s}` : s);
  if (!rc.name) invalid(`${at('name')}: missing`);
  const virtualHosts: VirtualHostModel[] = (rc.virtual_hosts ?? []).map((vh: Plain, i: number) => {
    const vf = at(`virtual_hosts[${i}]`);
    if (!vh.name) invalid(`${vf}.name: missing`);
    const domains: string[] = (vh.domains ?? []).map((d: string) => String(d).toLowerCase());
    if (domains.length === 0) invalid(`${vf}.domains: empty`);
    const vhost: VhostDefaults = {
      retryPolicy: vh.retry_policy,
      hedgePolicy: vh.hedge_policy,
      bufferLimitBytes: bufferLimit(vh.per_request_buffer_limit_bytes, DEFAULTS.retryBufferLimitBytes, `${vf}.per_request_buffer_limit_bytes`),
      filterConfigs: perFilterConfigs(vh.typed_per_filter_config, undefined, `${vf}.typed_per_filter_config`),
    };
    return {
      name: String(vh.name),
      domains,
      routes: (vh.routes ?? []).map((r: Plain, j: number) => route(r, vhost, `${vf}.routes[${j}]`)),
    };
  });
  // Envoy rejects a RouteConfiguration in which one domain appears in two virtual hosts.
  const seen = new Set<string>();
  for (const vh of virtualHosts) {
    for (const d of vh.domains) {
      if (seen.has(d)) invalid(`${at('virtual_hosts')}: domain ${JSON.stringify(d)} appears in more than one virtual host`);
      seen.add(d);
    }
  }
  return { name: String(rc.name), virtualHosts };
}

/** Decode and validate a RouteConfiguration resource; throws ResourceInvalid with the field at fault. */
export function translateRouteConfiguration(bytes: Uint8Array): RouteConfigModel {
  return routeConfigFromPlain(decodeMessage<Plain>(MESSAGE_NAMES.RouteConfiguration, bytes));
}
