// JwtAuthentication → the JWT model, and what is refused by name.
import { describe, expect, it } from 'vitest';
import { anyField, decodeAny, MESSAGE_NAMES } from './protos.js';
import { jwtAuthn } from './jwt-authn.js';
import { collectWarnings, type Plain } from './values.js';

function translate(config: Plain) {
  return jwtAuthn(decodeAny<Plain>(anyField(MESSAGE_NAMES.JwtAuthentication, config)), 'typed_config');
}

const remote = { remote_jwks: { http_uri: { uri: 'https://idp/jwks', timeout: { seconds: 2 } }, cache_duration: { seconds: 60 } } };

describe('jwtAuthn', () => {
  it('translates providers, rules and named requirements', () => {
    const m = translate({
      providers: { idp: { issuer: 'https://idp', audiences: ['api'], ...remote, payload_in_metadata: 'payload', from_headers: [{ name: 'X-Token', value_prefix: 'Bearer ' }] } },
      rules: [
        { match: { prefix: '/health' } },
        { match: { prefix: '/' }, requirement_name: 'strict' },
      ],
      requirement_map: { strict: { requires_any: { requirements: [{ provider_name: 'idp' }, { allow_missing: {} }] } } },
    });
    const idp = m.providers.get('idp')!;
    expect(idp.jwks).toEqual({ kind: 'remote', uri: 'https://idp/jwks', timeoutMs: 2000, cacheMs: 60_000 });
    expect(idp.fromHeaders).toEqual([{ name: 'x-token', prefix: 'Bearer ' }]);
    expect(idp.forward).toBe(false);
    expect(m.rules).toEqual([
      { match: { kind: 'prefix', value: '/health' }, requires: null },
      { match: { kind: 'prefix', value: '/' }, requires: { kind: 'any', requirements: [{ kind: 'provider', provider: 'idp', audiences: null }, { kind: 'allow_missing' }] } },
    ]);
  });

  it('warns by name that remote_jwks.http_uri.cluster is not used', () => {
    const withCluster = { remote_jwks: { ...remote.remote_jwks, http_uri: { ...remote.remote_jwks.http_uri, cluster: 'outbound|443||idp' } } };
    expect(collectWarnings(() => translate({ providers: { p: remote } })).warnings).toEqual([]);
    expect(collectWarnings(() => translate({ providers: { p: withCluster } })).warnings).toEqual([
      'typed_config.providers["p"].remote_jwks.http_uri.cluster: accepted but not enforced yet (the URI is fetched directly, not through cluster outbound|443||idp)',
    ]);
  });

  it.each([
    [{ providers: { p: { issuer: 'i' } } }, 'providers["p"]: needs remote_jwks or local_jwks'],
    [{ providers: { p: { local_jwks: { environment_variable: 'JWKS' } } } }, 'local_jwks: needs filename, inline_string or inline_bytes'],
    [{ providers: { p: { remote_jwks: { http_uri: { uri: 'https://x' } } } } }, 'remote_jwks.http_uri.timeout: missing or 0'],
    [{ providers: { p: { ...remote, from_params: ['access_token'] } } }, 'providers["p"].from_params: not supported'],
    [{ providers: { p: remote }, rules: [{ match: { prefix: '/' }, requires: { provider_name: 'q' } }] }, 'rules[0].requires.provider_name: no provider named "q"'],
    [{ providers: { p: remote }, rules: [{ match: { prefix: '/' }, requires: { requires_all: { requirements: [{ provider_name: 'p' }, { provider_name: 'p' }] } } }] }, 'requires.requires_all: not supported'],
    [{ providers: { p: remote }, bypass_cors_preflight: true }, 'typed_config.bypass_cors_preflight: not supported'],
  ])('refuses %#', (config, message) => {
    expect(() => translate(config)).toThrow(message);
  });
});
