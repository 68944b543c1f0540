// Compiles a service's `authorization:` and `requestAuthentication:` into Envoy filters for its inbound listener,
// as Istio compiles AuthorizationPolicy and RequestAuthentication: envoy.filters.http.jwt_authn (every issuer,
// allow_missing: a bad token is refused, a missing one is left to authorization), then an RBAC filter with the
// DENY rules, then one with the ALLOW rules; the TCP chain gets the same as envoy.filters.network.rbac. Pure.
import { MESSAGE_NAMES, anyField } from '../src/config/protos.js';
import type { AuthorizationRule, MeshConfig, RequestAuthenticationConfig, ServiceConfig } from './mesh-config.js';

export const JWT_FILTER = 'envoy.filters.http.jwt_authn';
export const HTTP_RBAC_FILTER = 'envoy.filters.http.rbac';
export const NETWORK_RBAC_FILTER = 'envoy.filters.network.rbac';
/** The payload_in_metadata key every provider writes: requestPrincipals match `<key>.iss` and `<key>.sub`. */
export const JWT_PAYLOAD_KEY = 'payload';
const DEFAULT_JWKS_TIMEOUT_MS = 5_000;

type Plain = Record<string, unknown>;

function duration(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

/** `*` any, `x*` prefix, `*x` suffix, else exact (the mesh config's wildcard rule). */
function stringMatch(value: string): Plain {
  if (value.endsWith('*')) return { prefix: value.slice(0, -1) };
  if (value.startsWith('*')) return { suffix: value.slice(1) };
  return { exact: value };
}

function metadataId(field: 'iss' | 'sub', value: Plain | null): Plain {
  return {
    metadata: {
      filter: JWT_FILTER,
      path: [{ key: JWT_PAYLOAD_KEY }, { key: field }],
      value: value === null ? { present_match: true } : { string_match: value },
    },
  };
}

/** `<iss>/<sub>`, `<iss>/*` or `*` → a principal on the jwt_authn payload in the request metadata. */
function requestPrincipal(p: string): Plain {
  if (p === '*') return metadataId('iss', null);
  const slash = p.lastIndexOf('/');
  const iss = metadataId('iss', { exact: p.slice(0, slash) });
  const sub = p.slice(slash + 1);
  return sub === '*' ? iss : { and_ids: { ids: [iss, metadataId('sub', { exact: sub })] } };
}

function orIds(ids: Plain[]): Plain {
  return ids.length === 1 ? ids[0]! : { or_ids: { ids } };
}

function orRules(rules: Plain[]): Plain {
  return rules.length === 1 ? rules[0]! : { or_rules: { rules } };
}

/**
 * One rule → an RBAC policy. `tcp`: fields a TCP connection cannot have (methods, paths, requestPrincipals) are
 * left out of a DENY rule (it then denies more, failing closed, as Istio does), and make an ALLOW rule null (it
 * allows nothing).
 */
function policy(rule: AuthorizationRule, trustDomain: string, tcp: boolean, deny: boolean): Plain | null {
  const httpOnly = rule.methods !== undefined || rule.paths !== undefined || rule.requestPrincipals !== undefined;
  if (tcp && httpOnly && !deny) return null;
  const ids: Plain[] = [];
  if (rule.principals) {
    ids.push(orIds(rule.principals.map((p) => ({ authenticated: p === '*' ? {} : { principal_name: stringMatch(p) } }))));
  }
  if (rule.namespaces) {
    ids.push(orIds(rule.namespaces.map((ns) => ({ authenticated: { principal_name: { prefix: `spiffe://${trustDomain}/ns/${ns}/` } } }))));
  }
  if (rule.requestPrincipals && !tcp) ids.push(orIds(rule.requestPrincipals.map(requestPrincipal)));
  const rules: Plain[] = [];
  if (rule.methods && !tcp) rules.push(orRules(rule.methods.map((m) => ({ header: { name: ':method', string_match: { exact: m } } }))));
  if (rule.paths && !tcp) {
    rules.push(orRules(rule.paths.map((p) => (p === '*' ? { any: true } : { url_path: { path: stringMatch(p) } }))));
  }
  if (rule.ports) rules.push(orRules(rule.ports.map((p) => ({ destination_port: p }))));
  return {
    permissions: [rules.length === 0 ? { any: true } : rules.length === 1 ? rules[0] : { and_rules: { rules } }],
    principals: [ids.length === 0 ? { any: true } : ids.length === 1 ? ids[0] : { and_ids: { ids } }],
  };
}

function rbacRules(rules: readonly AuthorizationRule[], action: 'ALLOW' | 'DENY', trustDomain: string, tcp: boolean): Plain {
  const policies: Record<string, Plain> = {};
  for (const r of rules) {
    const p = policy(r, trustDomain, tcp, action === 'DENY');
    if (p !== null) policies[r.name] = p;
  }
  return { action, policies };
}

/** The deny filter (when there are deny rules), then the allow filter (when `allow` is given, even empty). */
function rbacConfigs(s: ServiceConfig, trustDomain: string, tcp: boolean): Plain[] {
  const a = s.authorization;
  if (a === undefined) return [];
  const out: Plain[] = [];
  if (a.deny !== undefined && a.deny.length > 0) out.push(rbacRules(a.deny, 'DENY', trustDomain, tcp));
  if (a.allow !== undefined) out.push(rbacRules(a.allow, 'ALLOW', trustDomain, tcp));
  return out;
}

function jwtFilter(ra: RequestAuthenticationConfig): Plain {
  const providers: Record<string, Plain> = {};
  ra.jwtRules.forEach((r, i) => {
    const jwks =
      r.jwksFile !== undefined
        ? { local_jwks: { filename: r.jwksFile } }
        : {
            remote_jwks: {
              http_uri: { uri: r.jwksUri, timeout: duration(r.jwksTimeoutMs ?? DEFAULT_JWKS_TIMEOUT_MS) },
              ...(r.jwksCacheDurationMs !== undefined ? { cache_duration: duration(r.jwksCacheDurationMs) } : {}),
            },
          };
    providers[`jwt-${i}`] = {
      issuer: r.issuer,
      audiences: [...r.audiences],
      ...jwks,
      forward: r.forwardToken === true,
      payload_in_metadata: JWT_PAYLOAD_KEY,
    };
  });
  return {
    name: JWT_FILTER,
    typed_config: anyField(MESSAGE_NAMES.JwtAuthentication, {
      providers,
      rules: [{ match: { prefix: '/' }, requires: { allow_missing: {} } }],
    }),
  };
}

/** The HTTP filters a service's inbound listener runs before its own others (rate limit) and the router. */
export function inboundAuthFilters(mesh: MeshConfig, s: ServiceConfig): Plain[] {
  const out: Plain[] = [];
  if (s.requestAuthentication !== undefined) out.push(jwtFilter(s.requestAuthentication));
  for (const rules of rbacConfigs(s, mesh.trustDomain, false)) {
    out.push({ name: HTTP_RBAC_FILTER, typed_config: anyField(MESSAGE_NAMES.HttpRBAC, { rules, rules_stat_prefix: 'inbound_' }) });
  }
  return out;
}

/** The network filters a service's inbound TCP chain runs before tcp_proxy. */
export function inboundNetworkFilters(mesh: MeshConfig, s: ServiceConfig): Plain[] {
  return rbacConfigs(s, mesh.trustDomain, true).map((rules) => ({
    name: NETWORK_RBAC_FILTER,
    typed_config: anyField(MESSAGE_NAMES.NetworkRBAC, { rules, stat_prefix: 'inbound_tcp' }),
  }));
}
