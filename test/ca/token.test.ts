// Bootstrap tokens: what verifies, and each way a token is refused (the words are what a user reads in the log).
import { describe, expect, it } from 'vitest';
import { MAX_TOKEN_BYTES, mintToken, verifyToken } from '../../xds/ca/token.js';

const key = Buffer.alloc(32, 1);
const now = Date.UTC(2026, 10, 30);
const id = { namespace: 'shop', serviceAccount: 'web' };

describe('bootstrap token', () => {
  it('carries its identity and expiry', () => {
    const v = verifyToken(key, mintToken(key, id, 3600_000, now), now + 1000);
    expect(v).toEqual({ ok: true, claims: { namespace: 'shop', serviceAccount: 'web', issuedAt: now / 1000, expiresAt: now / 1000 + 3600 } });
  });

  it('is refused once expired', () => {
    const v = verifyToken(key, mintToken(key, id, 60_000, now), now + 60_000);
    expect(v).toMatchObject({ ok: false, reason: 'expired' });
  });

  it('is refused when signed with another key, or when its payload was changed', () => {
    const token = mintToken(key, id, 60_000, now);
    expect(verifyToken(Buffer.alloc(32, 2), token, now)).toMatchObject({ ok: false, reason: 'bad_signature' });
    const [p, , mac] = token.split('.');
    const payload = Buffer.from(JSON.stringify({ ns: 'kube-system', sa: 'web', iat: now / 1000, exp: now / 1000 + 60 })).toString('base64url');
    expect(verifyToken(key, `${p}.${payload}.${mac}`, now)).toMatchObject({ ok: false, reason: 'bad_signature' });
  });

  it('is refused when malformed or oversized, before any MAC is computed', () => {
    expect(verifyToken(key, 'eyJhbGciOiJub25lIn0.e30.', now)).toMatchObject({ ok: false, reason: 'malformed' });
    expect(verifyToken(key, `pt1.${'a'.repeat(MAX_TOKEN_BYTES)}.b`, now)).toMatchObject({ ok: false, reason: 'malformed' });
  });

  it('is only minted for names a SPIFFE path can carry', () => {
    expect(() => mintToken(key, { namespace: 'a/b', serviceAccount: 'web' }, 1000, now)).toThrow(/namespace/);
    expect(() => mintToken(key, { namespace: 'shop', serviceAccount: '' }, 1000, now)).toThrow(/service account/);
  });
});
