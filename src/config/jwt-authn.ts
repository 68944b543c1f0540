// Translates envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication into the JWT model: providers (issuer,
// audiences, JWKS from a file, inline or a URL) and rules (a path match → a requirement). What is not run is
// refused by name.
import type { JwksSourceModel, JwtAuthnModel, JwtProviderModel, JwtRequirementModel, JwtRuleModel } from '../authz/model.js';
import { durationMs, invalid, notEnforced, type Plain } from './values.js';

export const JWT_AUTHN_NAME = 'envoy.filters.http.jwt_authn';

/** Envoy's default cache_duration of remote JWKS. */
const DEFAULT_JWKS_CACHE_MS = 600_000;
/** A JWKS fetch that takes longer is abandoned (http_uri.timeout is required in Envoy; this bounds a 0). */
const MAX_JWKS_TIMEOUT_MS = 60_000;
const MAX_REQUIREMENT_DEPTH = 8;

function jwks(p: Plain, field: string): JwksSourceModel {
  if (p.jwks_source_specifier === 'local_jwks') {
    const ds = p.local_jwks ?? {};
    if (ds.filename) return { kind: 'file', path: String(ds.filename) };
    if (ds.inline_string !== undefined) return { kind: 'inline', json: String(ds.inline_string) };
    if (ds.inline_bytes !== undefined) return { kind: 'inline', json: Buffer.from(ds.inline_bytes as Uint8Array).toString('utf8') };
    return invalid(`${field}.local_jwks: needs filename, inline_string or inline_bytes (environment_variable is not supported)`);
  }
  if (p.jwks_source_specifier === 'remote_jwks') {
    const r = p.remote_jwks ?? {};
    if (r.async_fetch) invalid(`${field}.remote_jwks.async_fetch: not supported (keys are fetched on first use and then refreshed)`);
    const uri = String(r.http_uri?.uri ?? '');
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      return invalid(`${field}.remote_jwks.http_uri.uri: ${JSON.stringify(uri)} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') invalid(`${field}.remote_jwks.http_uri.uri: only http and https are supported`);
    const timeoutMs = durationMs(r.http_uri?.timeout, 0, `${field}.remote_jwks.http_uri.timeout`);
    if (timeoutMs === 0) invalid(`${field}.remote_jwks.http_uri.timeout: missing or 0`);
    if (r.http_uri?.cluster) notEnforced(`${field}.remote_jwks.http_uri.cluster`, `the URI is fetched directly, not through cluster ${String(r.http_uri.cluster)}`);
    const cacheMs = durationMs(r.cache_duration, DEFAULT_JWKS_CACHE_MS, `${field}.remote_jwks.cache_duration`);
    return { kind: 'remote', uri, timeoutMs: Math.min(timeoutMs, MAX_JWKS_TIMEOUT_MS), cacheMs: Math.max(1_000, cacheMs) };
  }
  return invalid(`${field}: needs remote_jwks or local_jwks`);
}

function provider(name: string, p: Plain, field: string): JwtProviderModel {
  for (const unsupported of ['from_params', 'from_cookies'] as const) {
    if ((p[unsupported] ?? []).length > 0) invalid(`${field}.${unsupported}: not supported (tokens are read from headers)`);
  }
  for (const unsupported of ['subjects', 'max_lifetime', 'forward_payload_header', 'header_in_metadata', 'failed_status_in_metadata'] as const) {
    if (p[unsupported]) invalid(`${field}.${unsupported}: not supported`);
  }
  const fromHeaders = ((p.from_headers ?? []) as Plain[]).map((h, i) => {
    if (!h.name) invalid(`${field}.from_headers[${i}].name: missing`);
    return { name: String(h.name).toLowerCase(), prefix: String(h.value_prefix ?? '') };
  });
  return {
    name,
    issuer: String(p.issuer ?? ''),
    audiences: ((p.audiences ?? []) as unknown[]).map(String),
    jwks: jwks(p, field),
    // Envoy's default: Authorization: Bearer <token> (and the access_token query parameter, not read here).
    fromHeaders: fromHeaders.length > 0 ? fromHeaders : [{ name: 'authorization', prefix: 'Bearer ' }],
    forward: Boolean(p.forward),
    payloadInMetadata: String(p.payload_in_metadata ?? ''),
    clockSkewSeconds: Number(p.clock_skew_seconds ?? 60),
    requireExpiration: Boolean(p.require_expiration),
  };
}

function requirement(r: Plain | undefined, providers: ReadonlyMap<string, JwtProviderModel>, field: string, depth: number): JwtRequirementModel {
  if (!r) return invalid(`${field}: missing`);
  if (depth > MAX_REQUIREMENT_DEPTH) invalid(`${field}: nested deeper than ${MAX_REQUIREMENT_DEPTH}`);
  const known = (name: string, at: string): string => {
    if (!providers.has(name)) invalid(`${at}: no provider named ${JSON.stringify(name)}`);
    return name;
  };
  switch (r.requires_type) {
    case 'provider_name':
      return { kind: 'provider', provider: known(String(r.provider_name), `${field}.provider_name`), audiences: null };
    case 'provider_and_audiences': {
      const pa = r.provider_and_audiences ?? {};
      return { kind: 'provider', provider: known(String(pa.provider_name ?? ''), `${field}.provider_and_audiences.provider_name`), audiences: ((pa.audiences ?? []) as unknown[]).map(String) };
    }
    case 'requires_any': {
      const list: Plain[] = r.requires_any?.requirements ?? [];
      if (list.length < 2) invalid(`${field}.requires_any.requirements: needs at least 2`);
      return { kind: 'any', requirements: list.map((x, i) => requirement(x, providers, `${field}.requires_any.requirements[${i}]`, depth + 1)) };
    }
    case 'allow_missing':
      return { kind: 'allow_missing' };
    case 'allow_missing_or_failed':
      return { kind: 'allow_missing_or_failed' };
    case 'requires_all':
      return invalid(`${field}.requires_all: not supported`);
    default:
      return invalid(`${field}: no requirement`);
  }
}

function rule(r: Plain, providers: ReadonlyMap<string, JwtProviderModel>, requirementMap: Record<string, Plain>, field: string): JwtRuleModel {
  const m = r.match ?? {};
  let match: JwtRuleModel['match'];
  if (m.prefix !== undefined) match = { kind: 'prefix', value: String(m.prefix) };
  else if (m.path !== undefined) match = { kind: 'path', value: String(m.path) };
  else return invalid(`${field}.match: only prefix and path are supported`);
  if ((m.headers ?? []).length > 0) invalid(`${field}.match.headers: not supported`);
  if (m.case_sensitive?.value === false) invalid(`${field}.match.case_sensitive: false is not supported`);
  let requires: JwtRequirementModel | null = null;
  if (r.requirement_type === 'requires') requires = requirement(r.requires, providers, `${field}.requires`, 0);
  else if (r.requirement_type === 'requirement_name') {
    const named = requirementMap[String(r.requirement_name)];
    if (named === undefined) invalid(`${field}.requirement_name: no requirement named ${JSON.stringify(r.requirement_name)} in requirement_map`);
    requires = requirement(named, providers, `requirement_map[${JSON.stringify(r.requirement_name)}]`, 0);
  }
  return { match, requires };
}

export function jwtAuthn(j: Plain, field: string): JwtAuthnModel {
  if (j.filter_state_rules) invalid(`${field}.filter_state_rules: not supported`);
  if (j.bypass_cors_preflight) invalid(`${field}.bypass_cors_preflight: not supported`);
  const providers = new Map<string, JwtProviderModel>();
  const raw: Record<string, Plain> = j.providers ?? {};
  for (const name of Object.keys(raw).sort()) providers.set(name, provider(name, raw[name]!, `${field}.providers[${JSON.stringify(name)}]`));
  const requirementMap: Record<string, Plain> = j.requirement_map ?? {};
  const rules = ((j.rules ?? []) as Plain[]).map((r, i) => rule(r, providers, requirementMap, `${field}.rules[${i}]`));
  return { providers, rules };
}
