// Translates the HTTP filters we run (HCM http_filters, and their per-route typed_per_filter_config) into the model:
// envoy.filters.http.fault, envoy.filters.http.local_ratelimit, envoy.filters.http.jwt_authn and
// envoy.filters.http.rbac. The router is implied (always last).
import { JWT_AUTHN_NAME, jwtAuthn } from './jwt-authn.js';
import { HTTP_RBAC_NAME, rbacFilter } from './rbac.js';
import type { FaultModel, FilterConfigModel, HttpFilterModel, LocalRateLimitModel } from './model.js';
import { decodeAny, TYPE_URLS } from './protos.js';
import { durationMs, invalid, notEnforced, wrapped, type Plain } from './values.js';

export const ROUTER_NAME = 'envoy.filters.http.router';
export const FAULT_NAME = 'envoy.filters.http.fault';
export const LOCAL_RATELIMIT_NAME = 'envoy.filters.http.local_ratelimit';

const PER_MILLION = 1_000_000;
const DENOMINATORS: Readonly<Record<string, number>> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000, 0: 100, 1: 10_000, 2: 1_000_000 };

/** type.v3.FractionalPercent as a share per million (capped at all of them; unset is 0, as in Envoy). */
export function perMillion(p: Plain | undefined, field: string): number {
  if (!p) return 0;
  const denominator = DENOMINATORS[String(p.denominator ?? 'HUNDRED')];
  if (denominator === undefined) invalid(`${field}.denominator: ${String(p.denominator)} is not HUNDRED, TEN_THOUSAND or MILLION`);
  const numerator = Number(p.numerator ?? 0);
  return Math.min(PER_MILLION, Math.round((numerator * PER_MILLION) / denominator));
}

function fault(f: Plain, field: string): FaultModel {
  if (f.delay?.header_delay) invalid(`${field}.delay.header_delay: not supported (use fixed_delay)`);
  if (f.abort?.header_abort) invalid(`${field}.abort.header_abort: not supported (use http_status or grpc_status)`);
  for (const unsupported of ['upstream_cluster', 'downstream_nodes', 'headers', 'response_rate_limit'] as const) {
    if (isSet(f[unsupported])) invalid(`${field}.${unsupported}: not supported`);
  }
  const delayMs = f.delay ? durationMs(f.delay.fixed_delay, 0, `${field}.delay.fixed_delay`) : 0;
  if (f.delay && delayMs === 0) invalid(`${field}.delay.fixed_delay: must be above 0`);
  const abort = f.abort;
  let abortHttpStatus = 0;
  let abortGrpcStatus: number | undefined;
  if (abort) {
    if (abort.grpc_status !== undefined && abort.grpc_status !== null) {
      abortGrpcStatus = Number(abort.grpc_status);
      if (!Number.isInteger(abortGrpcStatus) || abortGrpcStatus > 16) invalid(`${field}.abort.grpc_status: ${abortGrpcStatus} is not a gRPC status (0..16)`);
    } else {
      abortHttpStatus = Number(abort.http_status ?? 0);
      // Envoy's proto rule: 200 <= http_status < 600.
      if (!(abortHttpStatus >= 200 && abortHttpStatus < 600)) invalid(`${field}.abort.http_status: ${abortHttpStatus} is not in 200..599`);
    }
  }
  return {
    delayMs,
    delayPerMillion: f.delay ? perMillion(f.delay.percentage, `${field}.delay.percentage`) : 0,
    abortHttpStatus,
    abortGrpcStatus,
    abortPerMillion: abort ? perMillion(abort.percentage, `${field}.abort.percentage`) : 0,
    maxActiveFaults: wrapped<number>(f.max_active_faults, 0),
  };
}

/** null when the config has no token bucket (Envoy's way to enable the filter only on routes that carry one). */
function localRateLimit(l: Plain, field: string): LocalRateLimitModel | null {
  if (!l.stat_prefix) invalid(`${field}.stat_prefix: missing`);
  const bucket = l.token_bucket;
  if (!bucket) return null;
  const maxTokens = Number(bucket.max_tokens ?? 0);
  if (!(maxTokens > 0)) invalid(`${field}.token_bucket.max_tokens: must be above 0`);
  const tokensPerFill = wrapped<number>(bucket.tokens_per_fill, 1);
  if (!(tokensPerFill > 0)) invalid(`${field}.token_bucket.tokens_per_fill: must be above 0`);
  const fillIntervalMs = durationMs(bucket.fill_interval, 0, `${field}.token_bucket.fill_interval`);
  // Envoy's proto rule: fill_interval at least 1 ms (and required).
  if (fillIntervalMs === 0) invalid(`${field}.token_bucket.fill_interval: missing or 0`);
  const status = Number(l.status?.code ?? 0) || 429;
  if (!(status >= 200 && status < 600)) invalid(`${field}.status.code: ${status} is not in 200..599`);
  if (isSet(l.descriptors)) notEnforced(`${field}.descriptors`, 'one bucket limits every request, whatever its descriptors');
  if (isSet(l.response_headers_to_add)) notEnforced(`${field}.response_headers_to_add`, 'no header is added');
  if (l.local_rate_limit_per_downstream_connection === true) {
    notEnforced(`${field}.local_rate_limit_per_downstream_connection`, 'the bucket is shared by all connections');
  }
  if (Number(l.enable_x_ratelimit_headers ?? 0) !== 0) notEnforced(`${field}.enable_x_ratelimit_headers`, 'no x-ratelimit headers are sent');
  return {
    statPrefix: String(l.stat_prefix),
    maxTokens,
    tokensPerFill,
    fillIntervalMs,
    enabledPerMillion: perMillion(l.filter_enabled?.default_value, `${field}.filter_enabled.default_value`),
    enforcedPerMillion: perMillion(l.filter_enforced?.default_value, `${field}.filter_enforced.default_value`),
    status,
    // Envoy answers gRPC callers UNAVAILABLE (its mapping of 429) unless told RESOURCE_EXHAUSTED.
    grpcStatus: l.rate_limited_as_resource_exhausted === true ? 8 : 14,
  };
}

/** A field that carries something: not unset, not empty (a string, a list, bytes). */
function isSet(v: unknown): boolean {
  if (v === undefined || v === null || v === '' || v === false) return false;
  if (Array.isArray(v) || v instanceof Uint8Array) return v.length > 0;
  return true;
}

function typeOf(any: Plain | undefined): string {
  return String(any?.type_url ?? any?.typeUrl ?? '');
}

/** One Any config of a filter we know, or undefined for a type we do not run. */
function filterConfig(any: Plain, field: string): FilterConfigModel | undefined {
  const type = typeOf(any);
  if (type === TYPE_URLS.HTTPFault) return { kind: 'fault', config: fault(decodeAny<Plain>(any), field) };
  if (type === TYPE_URLS.LocalRateLimit) return { kind: 'local_ratelimit', config: localRateLimit(decodeAny<Plain>(any), field) };
  if (type === TYPE_URLS.HttpRBAC) return { kind: 'rbac', config: rbacFilter(decodeAny<Plain>(any), field, false) };
  if (type === TYPE_URLS.JwtAuthentication) return { kind: 'jwt_authn', config: jwtAuthn(decodeAny<Plain>(any), field) };
  return undefined;
}

export function isRouter(f: Plain): boolean {
  return f.name === ROUTER_NAME || typeOf(f.typed_config) === TYPE_URLS.Router;
}

/**
 * HCM http_filters → the filters to run before the router. The router must be there and last: it is the filter
 * that forwards. A filter we do not run is refused unless it is optional or disabled (then it is skipped, as Envoy
 * skips an optional filter it does not know).
 */
export function httpFilters(filters: readonly Plain[], field: string): HttpFilterModel[] {
  const out: HttpFilterModel[] = [];
  filters.forEach((f, i) => {
    const at = `${field}[${i}]`;
    if (isRouter(f)) {
      if (i !== filters.length - 1) invalid(`${at}: the router must be the last filter`);
      return;
    }
    if (f.disabled) return;
    const config = f.typed_config ? filterConfig(f.typed_config, `${at}.typed_config`) : undefined;
    if (config === undefined) {
      if (f.is_optional) return;
      invalid(`${at}: unsupported filter ${f.name || typeOf(f.typed_config)} (supported: ${FAULT_NAME}, ${LOCAL_RATELIMIT_NAME}, ${JWT_AUTHN_NAME}, ${HTTP_RBAC_NAME}, ${ROUTER_NAME})`);
    }
    if (!f.name) invalid(`${at}.name: missing`);
    out.push({ name: String(f.name), ...config });
  });
  const last = filters[filters.length - 1];
  if (last === undefined || !isRouter(last)) invalid(`${field}: must end with ${ROUTER_NAME}`);
  return out;
}

/**
 * typed_per_filter_config (a virtual host's, then a route's over it) → configs by filter name. A config of a type
 * we do not run is refused: a route an operator meant to protect must not quietly go without it.
 */
export function perFilterConfigs(
  map: Record<string, Plain> | undefined,
  inherited: ReadonlyMap<string, FilterConfigModel> | undefined,
  field: string,
): ReadonlyMap<string, FilterConfigModel> | undefined {
  const names = map === undefined ? [] : Object.keys(map);
  if (names.length === 0) return inherited;
  const out = new Map(inherited);
  for (const name of names) {
    const t = typeOf(map![name]);
    // RBACPerRoute and the JWT PerRouteConfig are other message types: they fall through to the refusal below.
    if (t === TYPE_URLS.HttpRBAC || t === TYPE_URLS.JwtAuthentication) invalid(`${field}[${JSON.stringify(name)}]: a per-route ${t} is not supported`);
    const config = filterConfig(map![name]!, `${field}[${JSON.stringify(name)}]`);
    if (config === undefined) invalid(`${field}[${JSON.stringify(name)}]: unsupported config type ${typeOf(map![name])}`);
    out.set(name, config);
  }
  return out;
}
