// Translates Envoy's RBAC (envoy.config.rbac.v3.RBAC, inside the HTTP and the network RBAC filter) into the
// authorization model. What Pillion does not run is refused by name (a NACK), never skipped: an operator who
// wrote a rule must not get a proxy that quietly ignores it.
import type { MetadataMatcherModel, PermissionModel, PolicyModel, PrincipalModel, RbacFilterModel, RbacRulesModel, StringMatcherModel, ValueMatcherModel } from '../authz/model.js';
import { decodeAny, TYPE_URLS } from './protos.js';
import { headerMatcher } from './route-config.js';
import { invalid, type Plain } from './values.js';

export const HTTP_RBAC_NAME = 'envoy.filters.http.rbac';
export const NETWORK_RBAC_NAME = 'envoy.filters.network.rbac';

/** Nesting of and/or/not deeper than this is refused: the matcher recurses, and no real policy needs it. */
const MAX_DEPTH = 32;

export function stringMatcher(m: Plain | undefined, field: string): StringMatcherModel {
  if (!m) return invalid(`${field}: missing`);
  const ignoreCase = Boolean(m.ignore_case);
  for (const kind of ['exact', 'prefix', 'suffix', 'contains'] as const) {
    if (m[kind] !== undefined) {
      const value = String(m[kind]);
      return { kind, value: ignoreCase ? value.toLowerCase() : value, ignoreCase };
    }
  }
  return invalid(`${field}: no supported pattern (exact, prefix, suffix, contains; safe_regex is not supported)`);
}

function valueMatcher(v: Plain | undefined, field: string): ValueMatcherModel {
  if (!v) return invalid(`${field}: missing`);
  switch (v.match_pattern) {
    case 'string_match':
      return { kind: 'string', matcher: stringMatcher(v.string_match, `${field}.string_match`) };
    case 'present_match':
      if (v.present_match !== true) invalid(`${field}.present_match: must be true`);
      return { kind: 'present' };
    case 'bool_match':
      return { kind: 'bool', value: Boolean(v.bool_match) };
    case undefined:
      return invalid(`${field}: no match_pattern`);
    default:
      return invalid(`${field}.${String(v.match_pattern)}: not supported (string_match, present_match, bool_match)`);
  }
}

function metadataMatcher(m: Plain, field: string): MetadataMatcherModel {
  if (!m.filter) invalid(`${field}.filter: missing`);
  const segments: Plain[] = m.path ?? [];
  if (segments.length === 0) invalid(`${field}.path: empty`);
  const path = segments.map((s, i) => {
    if (!s.key) invalid(`${field}.path[${i}].key: missing`);
    return String(s.key);
  });
  return { filter: String(m.filter), path, value: valueMatcher(m.value, `${field}.value`), invert: Boolean(m.invert) };
}

function urlPath(p: Plain | undefined, field: string): StringMatcherModel {
  if (!p?.path) return invalid(`${field}.path: missing`);
  return stringMatcher(p.path, `${field}.path`);
}

function permission(p: Plain, field: string, depth: number): PermissionModel {
  if (depth > MAX_DEPTH) invalid(`${field}: nested deeper than ${MAX_DEPTH}`);
  const rule = p.rule as string | undefined;
  switch (rule) {
    case 'any':
      if (p.any !== true) invalid(`${field}.any: must be true`);
      return { kind: 'any' };
    case 'and_rules':
    case 'or_rules': {
      const set: Plain[] = p[rule]?.rules ?? [];
      if (set.length === 0) invalid(`${field}.${rule}.rules: empty`);
      return { kind: rule === 'and_rules' ? 'and' : 'or', rules: set.map((r, i) => permission(r, `${field}.${rule}.rules[${i}]`, depth + 1)) };
    }
    case 'not_rule':
      return { kind: 'not', rule: permission(p.not_rule, `${field}.not_rule`, depth + 1) };
    case 'header':
      return { kind: 'header', header: headerMatcher(p.header, `${field}.header`) };
    case 'url_path':
      return { kind: 'url_path', matcher: urlPath(p.url_path, `${field}.url_path`) };
    case 'destination_port': {
      const port = Number(p.destination_port);
      if (!(port >= 0 && port <= 65_535)) invalid(`${field}.destination_port: ${port} is not in 0..65535`);
      return { kind: 'port', start: port, end: port + 1 };
    }
    case 'destination_port_range': {
      const start = Number(p.destination_port_range?.start ?? 0);
      const end = Number(p.destination_port_range?.end ?? 0);
      if (!(start >= 0 && end <= 65_536 && start < end)) invalid(`${field}.destination_port_range: [${start}, ${end}) is not a port range`);
      return { kind: 'port', start, end };
    }
    case 'metadata':
      return { kind: 'metadata', metadata: metadataMatcher(p.metadata, `${field}.metadata`) };
    case undefined:
      return invalid(`${field}: no rule`);
    default:
      return invalid(`${field}.${rule}: not supported (any, header, url_path, destination_port, destination_port_range, metadata, and_rules, or_rules, not_rule)`);
  }
}

function principal(p: Plain, field: string, depth: number): PrincipalModel {
  if (depth > MAX_DEPTH) invalid(`${field}: nested deeper than ${MAX_DEPTH}`);
  const id = p.identifier as string | undefined;
  switch (id) {
    case 'any':
      if (p.any !== true) invalid(`${field}.any: must be true`);
      return { kind: 'any' };
    case 'and_ids':
    case 'or_ids': {
      const set: Plain[] = p[id]?.ids ?? [];
      if (set.length === 0) invalid(`${field}.${id}.ids: empty`);
      return { kind: id === 'and_ids' ? 'and' : 'or', ids: set.map((x, i) => principal(x, `${field}.${id}.ids[${i}]`, depth + 1)) };
    }
    case 'not_id':
      return { kind: 'not', id: principal(p.not_id, `${field}.not_id`, depth + 1) };
    case 'authenticated': {
      const name = p.authenticated?.principal_name;
      return { kind: 'authenticated', name: name ? stringMatcher(name, `${field}.authenticated.principal_name`) : null };
    }
    case 'header':
      return { kind: 'header', header: headerMatcher(p.header, `${field}.header`) };
    case 'url_path':
      return { kind: 'url_path', matcher: urlPath(p.url_path, `${field}.url_path`) };
    case 'metadata':
      return { kind: 'metadata', metadata: metadataMatcher(p.metadata, `${field}.metadata`) };
    case undefined:
      return invalid(`${field}: no identifier`);
    default:
      return invalid(`${field}.${id}: not supported (any, authenticated, header, url_path, metadata, and_ids, or_ids, not_id)`);
  }
}

function policy(name: string, p: Plain, field: string): PolicyModel {
  if (p.condition || p.checked_condition) invalid(`${field}.${p.condition ? 'condition' : 'checked_condition'}: CEL conditions are not supported`);
  const permissions: Plain[] = p.permissions ?? [];
  const principals: Plain[] = p.principals ?? [];
  // Envoy's proto rules: at least one of each.
  if (permissions.length === 0) invalid(`${field}.permissions: empty`);
  if (principals.length === 0) invalid(`${field}.principals: empty`);
  return {
    name,
    permissions: permissions.map((x, i) => permission(x, `${field}.permissions[${i}]`, 0)),
    principals: principals.map((x, i) => principal(x, `${field}.principals[${i}]`, 0)),
  };
}

/** envoy.config.rbac.v3.RBAC → rules; policies in name order, as Envoy's map iterates them. */
export function rbacRules(r: Plain, field: string): RbacRulesModel {
  if (r.audit_logging_options) invalid(`${field}.audit_logging_options: not supported`);
  const action = String(r.action ?? 'ALLOW');
  if (action !== 'ALLOW' && action !== 'DENY' && action !== 'LOG') invalid(`${field}.action: ${action} is not ALLOW, DENY or LOG`);
  const map: Record<string, Plain> = r.policies ?? {};
  const names = Object.keys(map).sort();
  return { action, policies: names.map((n) => policy(n, map[n]!, `${field}.policies[${JSON.stringify(n)}]`)) };
}

/** The HTTP (envoy.extensions.filters.http.rbac.v3.RBAC) or network RBAC filter config. */
export function rbacFilter(f: Plain, field: string, network: boolean): RbacFilterModel {
  if (network) {
    if (!f.stat_prefix) invalid(`${field}.stat_prefix: missing`);
    // ONE_TIME_ON_FIRST_BYTE and CONTINUOUS decide alike here: nothing a policy reads changes during a connection.
  }
  return {
    statPrefix: String(network ? f.stat_prefix : (f.rules_stat_prefix ?? '')),
    rules: f.rules ? rbacRules(f.rules, `${field}.rules`) : null,
    shadow: f.shadow_rules ? rbacRules(f.shadow_rules, `${field}.shadow_rules`) : null,
  };
}

/** The network RBAC filters of a TCP chain (all but its last filter, the tcp_proxy), as the chain model's `rbac`. */
export function networkRbacFilters(filters: readonly Plain[], field: string): { rbac?: RbacFilterModel[] } {
  const out: RbacFilterModel[] = [];
  for (let i = 0; i < filters.length - 1; i++) {
    const f = filters[i]!;
    if (f.typed_config?.type_url !== TYPE_URLS.NetworkRBAC) continue;
    out.push(rbacFilter(decodeAny<Plain>(f.typed_config), `${field}[${i}].typed_config`, true));
  }
  return out.length > 0 ? { rbac: out } : {};
}
