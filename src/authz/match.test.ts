// The policy matcher with a fake mTLS peer (the TLS data path sets real ones): principal exact and prefix,
// namespace by SPIFFE prefix, and/or/not, headers, url_path, ports and JWT metadata.
import { describe, expect, it } from 'vitest';
import { parseSpiffeId, type PeerIdentity } from '../tls/peer.js';
import { filterAllows, firstMatch, NO_POLICY, permissionMatches, principalMatches } from './match.js';
import type { AuthzRequest, PermissionModel, PrincipalModel, RbacRulesModel } from './model.js';

const FRONTEND: PeerIdentity = parseSpiffeId('spiffe://cluster.local/ns/default/sa/frontend')!;
const OPS: PeerIdentity = parseSpiffeId('spiffe://cluster.local/ns/ops/sa/admin')!;

function req(over: Partial<AuthzRequest> = {}): AuthzRequest {
  return { peer: null, localPort: 8080, method: 'GET', path: '/api/items?x=1', requestHeaders: { host: 'api', 'x-team': 'blue' }, filterMetadata: null, ...over };
}

const exact = (value: string) => ({ kind: 'exact', value, ignoreCase: false }) as const;
const prefix = (value: string) => ({ kind: 'prefix', value, ignoreCase: false }) as const;
const principal = (name: string): PrincipalModel => ({ kind: 'authenticated', name: exact(name) });
const namespace = (ns: string): PrincipalModel => ({ kind: 'authenticated', name: prefix(`spiffe://cluster.local/ns/${ns}/`) });

describe('principals', () => {
  it('authenticated matches the SPIFFE ID of the mTLS peer, exact or by prefix', () => {
    expect(principalMatches(principal(FRONTEND.spiffeId), req({ peer: FRONTEND }))).toBe(true);
    expect(principalMatches(principal(FRONTEND.spiffeId), req({ peer: OPS }))).toBe(false);
    expect(principalMatches(namespace('ops'), req({ peer: OPS }))).toBe(true);
    expect(principalMatches(namespace('ops'), req({ peer: FRONTEND }))).toBe(false);
    // "ns/op/" must not match "ns/ops/": the trailing slash is part of the prefix.
    expect(principalMatches(namespace('op'), req({ peer: OPS }))).toBe(false);
    expect(principalMatches({ kind: 'authenticated', name: null }, req({ peer: OPS }))).toBe(true);
  });

  it('no principal rule matches a plaintext caller (peer null): allow lists fail closed', () => {
    for (const p of [principal(FRONTEND.spiffeId), namespace('default'), { kind: 'authenticated', name: null } as PrincipalModel]) {
      expect(principalMatches(p, req())).toBe(false);
    }
    const allow: RbacRulesModel = { action: 'ALLOW', policies: [{ name: 'frontend', permissions: [{ kind: 'any' }], principals: [principal(FRONTEND.spiffeId)] }] };
    expect(filterAllows({ statPrefix: '', rules: allow, shadow: null }, req())).toBe(false);
    expect(filterAllows({ statPrefix: '', rules: allow, shadow: null }, req({ peer: FRONTEND }))).toBe(true);
  });

  it('and_ids, or_ids and not_id combine', () => {
    const p: PrincipalModel = { kind: 'and', ids: [namespace('ops'), { kind: 'not', id: principal('spiffe://cluster.local/ns/ops/sa/intern') }] };
    expect(principalMatches(p, req({ peer: OPS }))).toBe(true);
    expect(principalMatches(p, req({ peer: parseSpiffeId('spiffe://cluster.local/ns/ops/sa/intern')! }))).toBe(false);
    expect(principalMatches({ kind: 'or', ids: [namespace('default'), namespace('ops')] }, req({ peer: FRONTEND }))).toBe(true);
  });

  it('metadata matches the verified JWT payload (requestPrincipals)', () => {
    const issSub: PrincipalModel = {
      kind: 'and',
      ids: [
        { kind: 'metadata', metadata: { filter: 'envoy.filters.http.jwt_authn', path: ['payload', 'iss'], value: { kind: 'string', matcher: exact('https://issuer') }, invert: false } },
        { kind: 'metadata', metadata: { filter: 'envoy.filters.http.jwt_authn', path: ['payload', 'sub'], value: { kind: 'string', matcher: exact('alice') }, invert: false } },
      ],
    };
    const withPayload = (payload: Record<string, unknown>) => req({ filterMetadata: { 'envoy.filters.http.jwt_authn': { payload } } });
    expect(principalMatches(issSub, withPayload({ iss: 'https://issuer', sub: 'alice' }))).toBe(true);
    expect(principalMatches(issSub, withPayload({ iss: 'https://issuer', sub: 'bob' }))).toBe(false);
    expect(principalMatches(issSub, req())).toBe(false);
    const anyToken: PrincipalModel = { kind: 'metadata', metadata: { filter: 'envoy.filters.http.jwt_authn', path: ['payload', 'iss'], value: { kind: 'present' }, invert: false } };
    expect(principalMatches(anyToken, withPayload({ iss: 'x' }))).toBe(true);
    expect(principalMatches(anyToken, req())).toBe(false);
  });
});

describe('permissions', () => {
  it('header (with :method from the request line), url_path without the query, ports', () => {
    const get: PermissionModel = { kind: 'header', header: { name: ':method', kind: 'exact', value: 'GET', invert: false } };
    expect(permissionMatches(get, req())).toBe(true);
    expect(permissionMatches(get, req({ method: 'POST' }))).toBe(false);
    expect(permissionMatches({ kind: 'header', header: { name: 'x-team', kind: 'prefix', value: 'bl', invert: false } }, req())).toBe(true);
    expect(permissionMatches({ kind: 'url_path', matcher: exact('/api/items') }, req())).toBe(true);
    expect(permissionMatches({ kind: 'url_path', matcher: prefix('/admin') }, req())).toBe(false);
    expect(permissionMatches({ kind: 'port', start: 8080, end: 8081 }, req())).toBe(true);
    expect(permissionMatches({ kind: 'port', start: 9000, end: 9100 }, req())).toBe(false);
  });

  it(':authority is the request\'s authority (an HTTP/2 head\'s map has no pseudo headers), else Host', () => {
    const api: PermissionModel = { kind: 'header', header: { name: ':authority', kind: 'exact', value: 'api', invert: false } };
    expect(permissionMatches(api, req())).toBe(true);
    expect(permissionMatches(api, req({ authority: 'api', requestHeaders: {} }))).toBe(true);
    expect(permissionMatches(api, req({ authority: 'other', requestHeaders: {} }))).toBe(false);
    expect(permissionMatches(api, req({ requestHeaders: {} }))).toBe(false);
  });

  it('a TCP connection has no method or path: HTTP rules never match it', () => {
    const tcp = req({ method: '', path: '', requestHeaders: null });
    expect(permissionMatches({ kind: 'header', header: { name: ':method', kind: 'exact', value: 'GET', invert: false } }, tcp)).toBe(false);
    expect(permissionMatches({ kind: 'url_path', matcher: prefix('/') }, tcp)).toBe(false);
    expect(permissionMatches({ kind: 'port', start: 8080, end: 8081 }, tcp)).toBe(true);
  });
});

describe('rule sets', () => {
  const deny: RbacRulesModel = {
    action: 'DENY',
    policies: [
      { name: 'a-ops', permissions: [{ kind: 'any' }], principals: [namespace('ops')] },
      { name: 'b-delete', permissions: [{ kind: 'header', header: { name: ':method', kind: 'exact', value: 'DELETE', invert: false } }], principals: [{ kind: 'any' }] },
    ],
  };

  it('returns the first matching policy in order, or NO_POLICY', () => {
    expect(firstMatch(deny, req({ peer: OPS, method: 'DELETE' }))).toBe(0);
    expect(firstMatch(deny, req({ method: 'DELETE' }))).toBe(1);
    expect(firstMatch(deny, req())).toBe(NO_POLICY);
  });

  it('DENY refuses what matches; ALLOW with no policy refuses everything; no rules allow all', () => {
    expect(filterAllows({ statPrefix: '', rules: deny, shadow: null }, req({ peer: OPS }))).toBe(false);
    expect(filterAllows({ statPrefix: '', rules: deny, shadow: null }, req({ peer: FRONTEND }))).toBe(true);
    expect(filterAllows({ statPrefix: '', rules: { action: 'ALLOW', policies: [] }, shadow: null }, req({ peer: FRONTEND }))).toBe(false);
    expect(filterAllows({ statPrefix: '', rules: null, shadow: deny }, req({ peer: OPS }))).toBe(true);
    expect(filterAllows({ statPrefix: '', rules: { action: 'LOG', policies: deny.policies }, shadow: null }, req({ peer: OPS }))).toBe(true);
  });
});
