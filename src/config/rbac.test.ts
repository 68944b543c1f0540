// Envoy RBAC configs → the model, and the refusals (NACKs) that name the field Pillion does not run.
import { describe, expect, it } from 'vitest';
import { decodeAny, anyField, MESSAGE_NAMES } from './protos.js';
import { rbacFilter } from './rbac.js';
import type { Plain } from './values.js';

/** Through the wire, as a real xDS peer's config arrives. */
function translate(config: Plain, network = false) {
  const any = anyField(network ? MESSAGE_NAMES.NetworkRBAC : MESSAGE_NAMES.HttpRBAC, config);
  return rbacFilter(decodeAny<Plain>(any), 'typed_config', network);
}

const anyPolicy = { permissions: [{ any: true }], principals: [{ any: true }] };

describe('rbacFilter', () => {
  it('translates permissions and principals, policies in name order', () => {
    const m = translate({
      rules: {
        action: 'DENY',
        policies: {
          zeta: anyPolicy,
          alpha: {
            permissions: [{ and_rules: { rules: [{ header: { name: ':method', string_match: { exact: 'GET' } } }, { url_path: { path: { prefix: '/api' } } }, { destination_port: 8080 }] } }],
            principals: [
              { or_ids: { ids: [{ authenticated: { principal_name: { exact: 'spiffe://td/ns/a/sa/b' } } }, { not_id: { authenticated: { principal_name: { prefix: 'spiffe://td/ns/x/' } } } }] } },
              { metadata: { filter: 'envoy.filters.http.jwt_authn', path: [{ key: 'payload' }, { key: 'iss' }], value: { present_match: true } } },
            ],
          },
        },
      },
      shadow_rules: { action: 'ALLOW', policies: {} },
    });
    expect(m.rules?.action).toBe('DENY');
    expect(m.rules?.policies.map((p) => p.name)).toEqual(['alpha', 'zeta']);
    expect(m.rules?.policies[0]!.permissions[0]).toEqual({
      kind: 'and',
      rules: [
        { kind: 'header', header: { name: ':method', kind: 'exact', value: 'GET', invert: false } },
        { kind: 'url_path', matcher: { kind: 'prefix', value: '/api', ignoreCase: false } },
        { kind: 'port', start: 8080, end: 8081 },
      ],
    });
    expect(m.rules?.policies[0]!.principals[1]).toEqual({
      kind: 'metadata',
      metadata: { filter: 'envoy.filters.http.jwt_authn', path: ['payload', 'iss'], value: { kind: 'present' }, invert: false },
    });
    expect(m.shadow).toEqual({ action: 'ALLOW', policies: [] });
  });

  it('rules absent: the filter allows everything', () => {
    expect(translate({}).rules).toBeNull();
  });

  it.each([
    [{ permissions: [{ destination_ip: { address_prefix: '10.0.0.0' } }], principals: [{ any: true }] }, 'policies["p"].permissions[0].destination_ip: not supported'],
    [{ permissions: [{ requested_server_name: { exact: 'x' } }], principals: [{ any: true }] }, 'permissions[0].requested_server_name: not supported'],
    [{ permissions: [{ any: true }], principals: [{ remote_ip: {} }] }, 'principals[0].remote_ip: not supported'],
    [{ permissions: [{ any: true }], principals: [{ filter_state: {} }] }, 'principals[0].filter_state: not supported'],
    [{ permissions: [{ any: true }], principals: [{ any: true }], condition: {} }, 'policies["p"].condition: CEL conditions are not supported'],
    [{ permissions: [{ url_path: { path: {} } }], principals: [{ any: true }] }, 'url_path.path: no supported pattern'],
    [{ permissions: [], principals: [{ any: true }] }, 'policies["p"].permissions: empty'],
    [{ permissions: [{ any: true }], principals: [{ metadata: { filter: 'f', path: [{ key: 'k' }], value: { double_match: {} } } }] }, 'value.double_match: not supported'],
  ])('refuses what it does not run, naming the field (%#)', (policy, message) => {
    expect(() => translate({ rules: { action: 'ALLOW', policies: { p: policy } } })).toThrow(message);
  });

  it('network RBAC needs a stat_prefix', () => {
    expect(() => translate({ rules: { policies: {} } }, true)).toThrow('typed_config.stat_prefix: missing');
    expect(translate({ rules: { action: 'DENY', policies: { p: anyPolicy } }, stat_prefix: 'tcp' }, true).rules?.action).toBe('DENY');
  });
});
