// Matches Envoy RBAC policies against a request or a connection: the pure core the HTTP RBAC filter and the TCP
// proxy's network RBAC check share. Recursion over plain data; nothing is allocated per request.
import { headerMatches } from '../http/route-match.js';
import type { AuthzRequest, MetadataMatcherModel, PermissionModel, PolicyModel, PrincipalModel, RbacFilterModel, RbacRulesModel, StringMatcherModel } from './model.js';

/** No policy matched. */
export const NO_POLICY = -1;

export function stringMatches(m: StringMatcherModel, value: string): boolean {
  // Envoy lower-cases both sides for ignore_case; the translator lower-cased m.value already.
  const v = m.ignoreCase ? value.toLowerCase() : value;
  switch (m.kind) {
    case 'exact':
      return v === m.value;
    case 'prefix':
      return v.startsWith(m.value);
    case 'suffix':
      return v.endsWith(m.value);
    case 'contains':
      return v.includes(m.value);
  }
}

/** A header's value as Envoy's HeaderUtility sees it: repeated headers joined with ','; pseudo-headers from the request. */
function headerValue(req: AuthzRequest, name: string): string | undefined {
  if (name === ':method') return req.method === '' ? undefined : req.method;
  if (name === ':path') return req.path === '' ? undefined : req.path;
  if (name === ':authority' && req.authority !== undefined && req.authority !== '') return req.authority;
  const headers = req.requestHeaders;
  if (headers === null) return undefined;
  const v = name === ':authority' ? (headers[':authority'] ?? headers.host) : headers[name];
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.join(',');
}

function headerRule(req: AuthzRequest, header: Parameters<typeof headerMatches>[0]): boolean {
  return headerMatches(header, headerValue(req, header.name)) !== header.invert;
}

/** url_path: the path without query (a TCP connection has none, so it never matches). */
function urlPathMatches(req: AuthzRequest, m: StringMatcherModel): boolean {
  const path = req.path;
  if (path === '') return false;
  const q = path.indexOf('?');
  return stringMatches(m, q < 0 ? path : path.slice(0, q));
}

function metadataMatches(req: AuthzRequest, m: MetadataMatcherModel): boolean {
  let value: unknown = req.filterMetadata?.[m.filter];
  for (let i = 0; i < m.path.length && value !== undefined; i++) {
    value = value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[m.path[i]!] : undefined;
  }
  let matched: boolean;
  const vm = m.value;
  if (value === undefined) matched = false;
  else if (vm.kind === 'present') matched = true;
  else if (vm.kind === 'bool') matched = value === vm.value;
  else matched = typeof value === 'string' && stringMatches(vm.matcher, value);
  return matched !== m.invert;
}

export function permissionMatches(p: PermissionModel, req: AuthzRequest): boolean {
  switch (p.kind) {
    case 'any':
      return true;
    case 'and':
      for (let i = 0; i < p.rules.length; i++) if (!permissionMatches(p.rules[i]!, req)) return false;
      return true;
    case 'or':
      for (let i = 0; i < p.rules.length; i++) if (permissionMatches(p.rules[i]!, req)) return true;
      return false;
    case 'not':
      return !permissionMatches(p.rule, req);
    case 'header':
      return headerRule(req, p.header);
    case 'url_path':
      return urlPathMatches(req, p.matcher);
    case 'port':
      return req.localPort >= p.start && req.localPort < p.end;
    case 'metadata':
      return metadataMatches(req, p.metadata);
  }
}

export function principalMatches(p: PrincipalModel, req: AuthzRequest): boolean {
  switch (p.kind) {
    case 'any':
      return true;
    case 'and':
      for (let i = 0; i < p.ids.length; i++) if (!principalMatches(p.ids[i]!, req)) return false;
      return true;
    case 'or':
      for (let i = 0; i < p.ids.length; i++) if (principalMatches(p.ids[i]!, req)) return true;
      return false;
    case 'not':
      return !principalMatches(p.id, req);
    case 'authenticated': {
      // Only a peer mTLS proved: on plaintext (peer null) no principal rule matches, so ALLOW rules fail closed.
      const peer = req.peer;
      if (peer === null) return false;
      return p.name === null || stringMatches(p.name, peer.spiffeId);
    }
    case 'header':
      return headerRule(req, p.header);
    case 'url_path':
      return urlPathMatches(req, p.matcher);
    case 'metadata':
      return metadataMatches(req, p.metadata);
  }
}

export function policyMatches(policy: PolicyModel, req: AuthzRequest): boolean {
  let permitted = false;
  for (let i = 0; i < policy.permissions.length && !permitted; i++) permitted = permissionMatches(policy.permissions[i]!, req);
  if (!permitted) return false;
  for (let i = 0; i < policy.principals.length; i++) if (principalMatches(policy.principals[i]!, req)) return true;
  return false;
}

/** The index of the first policy (in name order) that matches, or NO_POLICY. */
export function firstMatch(rules: RbacRulesModel, req: AuthzRequest): number {
  const policies = rules.policies;
  for (let i = 0; i < policies.length; i++) if (policyMatches(policies[i]!, req)) return i;
  return NO_POLICY;
}

/** Whether rules let the request through: ALLOW needs a matching policy, DENY needs none, LOG never refuses. */
export function allows(action: RbacRulesModel['action'], matched: number): boolean {
  if (action === 'ALLOW') return matched !== NO_POLICY;
  if (action === 'DENY') return matched === NO_POLICY;
  return true;
}

/** The enforced decision of a filter (its shadow rules never change it). */
export function filterAllows(f: RbacFilterModel, req: AuthzRequest): boolean {
  return f.rules === null || allows(f.rules.action, firstMatch(f.rules, req));
}
