// The JWT filter's decisions on a fake request: a required provider with no token is 401 jwt_missing, a path no
// rule covers passes at once, a verified token writes the payload into the metadata and leaves the chain going.
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { JwksCache } from '../../authz/jwks.js';
import type { JwtAuthnModel, JwtProviderModel } from '../../authz/model.js';
import { NO_AUTHZ_SINK } from '../../authz/stats.js';
import { REASONS, type Reason } from '../../reasons.js';
import type { FilteredRequest } from './filter.js';
import { JwtAuthnFilter } from './jwt-authn.js';

class FakeRequest implements FilteredRequest {
  grpc = false;
  peer = null;
  localPort = 8080;
  method = 'GET';
  filterMetadata: FilteredRequest['filterMetadata'] = null;
  ended = false;
  reply: Reason | null = null;
  continued = false;
  constructor(
    public path: string,
    public requestHeaders: Record<string, string>,
  ) {}
  localReply(reason: Reason): void {
    this.reply = reason;
    this.ended = true;
  }
  continueFilters(): void {
    this.continued = true;
  }
  hold(): void {}
}

async function settle(r: FakeRequest): Promise<void> {
  for (let i = 0; i < 200 && r.reply === null && !r.continued; i++) await new Promise((res) => setTimeout(res, 5));
}

describe('JwtAuthnFilter', async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k' }] });
  const provider: JwtProviderModel = {
    name: 'idp', issuer: 'https://idp', audiences: ['api'], jwks: { kind: 'inline', json: jwks },
    fromHeaders: [{ name: 'authorization', prefix: 'Bearer ' }], forward: false, payloadInMetadata: 'payload', clockSkewSeconds: 60, requireExpiration: true,
  };
  const model: JwtAuthnModel = {
    providers: new Map([['idp', provider]]),
    rules: [
      { match: { kind: 'prefix', value: '/open' }, requires: null },
      { match: { kind: 'prefix', value: '/' }, requires: { kind: 'provider', provider: 'idp', audiences: null } },
    ],
  };
  const filter = new JwtAuthnFilter('jwt', model, NO_AUTHZ_SINK, new JwksCache());
  const sign = (claims: Record<string, unknown>) =>
    new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k' }).setIssuer('https://idp').setAudience('api').setSubject('alice').sign(privateKey);

  it('a path no rule requires a token for passes synchronously', () => {
    expect(filter.onRequest(new FakeRequest('/open/x', {}))).toBe(true);
  });

  it('a required token that is missing: 401 jwt_missing', async () => {
    const r = new FakeRequest('/api', {});
    expect(filter.onRequest(r)).toBe(false);
    await settle(r);
    expect(r.reply).toBe(REASONS.jwtMissing);
  });

  it('require_expiration: a token without exp is refused', async () => {
    const r = new FakeRequest('/api', { authorization: `Bearer ${await sign({})}` });
    filter.onRequest(r);
    await settle(r);
    expect(r.reply).toBe(REASONS.jwtInvalid);
  });

  it('a verified token: payload in the metadata, token removed, chain goes on', async () => {
    const r = new FakeRequest('/api?q=1', { authorization: `bearer ${await sign({ exp: Math.floor(Date.now() / 1000) + 60 })}` });
    filter.onRequest(r);
    await settle(r);
    expect(r.continued).toBe(true);
    expect(r.reply).toBeNull();
    expect((r.filterMetadata?.['envoy.filters.http.jwt_authn']?.payload as { sub: string }).sub).toBe('alice');
    expect(r.requestHeaders.authorization).toBeUndefined();
  });

  it('a request that ended while its token was checked is left alone', async () => {
    const r = new FakeRequest('/api', { authorization: `Bearer ${await sign({ exp: Math.floor(Date.now() / 1000) + 60 })}` });
    filter.onRequest(r);
    r.ended = true;
    await new Promise((res) => setTimeout(res, 50));
    expect(r.continued).toBe(false);
    expect(r.reply).toBeNull();
  });
});
