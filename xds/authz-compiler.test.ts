// The `authorization:` and `requestAuthentication:` blocks: validated with paths, compiled into Envoy's filters on
// the inbound listener (jwt_authn, then the DENY RBAC, then the ALLOW RBAC, before the rate limit), and read back
// by the proxy's own translator.
import { describe, expect, it } from 'vitest';
import { translateListener } from '../src/config/listener.js';
import { compileForNode } from './compiler.js';
import { parseMeshConfig } from './mesh-config.js';

const MESH = (protocol: string) => `
trustDomain: td.local
services:
  - name: api
    ports: [{ port: 8080, protocol: ${protocol} }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    policy: { rateLimit: { requests: 10, per: 1s } }
    requestAuthentication:
      jwtRules:
        - { issuer: "https://issuer.example", audiences: [api], jwksUri: "https://issuer.example/jwks.json", jwksTimeout: 2s }
        - { issuer: other, jwksFile: /etc/jwks.json, forwardToken: true }
    authorization:
      deny: [{ name: no-delete, methods: [DELETE], paths: ["/admin/*"] }]
      allow:
        - { name: ops, namespaces: [ops], ports: [8080] }
        - { name: alice, requestPrincipals: ["https://issuer.example/alice", "other/*"] }
        - { principals: ["spiffe://td.local/ns/default/*"] }
`;

function inbound(protocol: string) {
  const res = compileForNode(parseMeshConfig(MESH(protocol)), { id: 'n', service: 'api', namespace: 'default', serviceAccount: 'api', appPort: 9000, inboundPort: 15006, outboundPort: 15001 });
  const l = res.listeners.find((x) => x.name === 'inbound')!;
  return translateListener(l.value).model;
}

describe('authorization compile', () => {
  it('puts jwt_authn, the DENY then the ALLOW RBAC filter before the rate limit on the inbound HTTP chain', () => {
    const filters = inbound('http').http!.httpFilters;
    expect(filters.map((f) => f.kind)).toEqual(['jwt_authn', 'rbac', 'rbac', 'local_ratelimit']);
    const [jwt, deny, allow] = filters;
    if (jwt?.kind !== 'jwt_authn' || deny?.kind !== 'rbac' || allow?.kind !== 'rbac') throw new Error('kinds');
    expect([...jwt.config.providers.values()].map((p) => [p.issuer, p.audiences, p.jwks.kind, p.forward, p.payloadInMetadata])).toEqual([
      ['https://issuer.example', ['api'], 'remote', false, 'payload'],
      ['other', [], 'file', true, 'payload'],
    ]);
    expect(jwt.config.rules).toEqual([{ match: { kind: 'prefix', value: '/' }, requires: { kind: 'allow_missing' } }]);
    expect(deny.config.rules?.action).toBe('DENY');
    expect(deny.config.rules?.policies.map((p) => p.name)).toEqual(['no-delete']);
    expect(allow.config.rules?.action).toBe('ALLOW');
    expect(allow.config.rules?.policies.map((p) => p.name)).toEqual(['alice', 'allow[2]', 'ops']);
    const ops = allow.config.rules!.policies[2]!;
    expect(ops.principals).toEqual([{ kind: 'authenticated', name: { kind: 'prefix', value: 'spiffe://td.local/ns/ops/', ignoreCase: false } }]);
    expect(ops.permissions).toEqual([{ kind: 'port', start: 8080, end: 8081 }]);
  });

  it('a TCP chain gets network RBAC: HTTP-only fields widen a DENY rule and drop an ALLOW rule', () => {
    const tcp = inbound('tcp').tcp!;
    expect(tcp.rbac?.map((r) => r.rules?.action)).toEqual(['DENY', 'ALLOW']);
    expect(tcp.rbac![0]!.rules!.policies[0]!.permissions).toEqual([{ kind: 'any' }]);
    expect(tcp.rbac![1]!.rules!.policies.map((p) => p.name)).toEqual(['allow[2]', 'ops']);
  });

  it('no authorization: no filters', () => {
    const res = compileForNode(parseMeshConfig('services: [{ name: a, ports: [{ port: 80, protocol: http }] }]'), { id: 'n', service: 'a', namespace: 'default', serviceAccount: 'a', appPort: 9000, inboundPort: 15006, outboundPort: 15001 });
    const l = translateListener(res.listeners.find((x) => x.name === 'inbound')!.value).model;
    expect(l.http!.httpFilters).toEqual([]);
  });
});

describe('authorization validation', () => {
  const bad = (block: string) => () => parseMeshConfig(`services: [{ name: a, ports: [{ port: 80, protocol: http }], ${block} }]`);
  it.each([
    ['authorization: { allow: [{ methods: [get] }] }', 'services[0].authorization.allow[0].methods[0]: expected an HTTP method'],
    ['authorization: { deny: [{ paths: ["/a*b"] }] }', 'services[0].authorization.deny[0].paths[0]: "/a*b": a "*" may only start or end the value'],
    ['authorization: { allow: [{ principals: ["frontend"] }] }', 'services[0].authorization.allow[0].principals[0]: expected a SPIFFE ID'],
    ['authorization: { allow: [{ requestPrincipals: ["nosubject"] }] }', 'services[0].authorization.allow[0].requestPrincipals[0]: expected "<issuer>/<subject>"'],
    ['authorization: { allow: [{ name: x }], deny: [{ name: x }] }', 'services[0].authorization.deny[0].name: duplicate rule name "x"'],
    ['authorization: { allow: [{ ports: [] }] }', 'services[0].authorization.allow[0].ports: expected at least one port'],
    ['requestAuthentication: { jwtRules: [{ issuer: x }] }', 'services[0].requestAuthentication.jwtRules[0]: needs jwksFile or jwksUri'],
    ['requestAuthentication: { jwtRules: [{ issuer: x, jwksUri: "ftp://x" }] }', 'services[0].requestAuthentication.jwtRules[0].jwksUri: expected an http:// or https:// URL'],
  ])('%s', (block, message) => {
    expect(bad(block)).toThrow(message);
  });
});
