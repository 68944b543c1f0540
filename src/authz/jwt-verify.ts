// Verifies one JWT against a provider (jose does the JOSE work): signature by a key of the provider's JWKS,
// issuer, audience, exp and nbf with the provider's clock skew. Every refusal is a bounded JwtResult; nothing
// throws out of here.
import { errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { JwtProviderModel } from './model.js';
import type { JwtResult } from './stats.js';

/** Asymmetric algorithms only: `none` is never accepted, nor HMAC (a JWKS of public keys has no shared secret). */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

export type JwtOutcome = { readonly ok: true; readonly payload: JWTPayload } | { readonly ok: false; readonly result: JwtResult; readonly detail: string };

function refused(result: JwtResult, detail: string): JwtOutcome {
  return { ok: false, result, detail };
}

/** The result for an error jose threw. */
export function resultOf(err: unknown): JwtOutcome {
  if (err instanceof errors.JWTExpired) return refused('expired', err.message);
  if (err instanceof errors.JWTClaimValidationFailed) {
    if (err.claim === 'nbf' || err.claim === 'iat') return refused('not_yet_valid', err.message);
    if (err.claim === 'iss') return refused('wrong_issuer', err.message);
    if (err.claim === 'aud') return refused('wrong_audience', err.message);
    if (err.claim === 'exp') return refused('no_expiration', err.message);
    return refused('malformed', err.message);
  }
  if (err instanceof errors.JOSEAlgNotAllowed || err instanceof errors.JOSENotSupported) return refused('alg_not_allowed', err.message);
  if (err instanceof errors.JWSSignatureVerificationFailed) return refused('bad_signature', err.message);
  if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) return refused('unknown_key', err.message);
  return refused('malformed', err instanceof Error ? err.message : String(err));
}

/** Verifies `token` for `provider` (audiences: the requirement's, overriding the provider's when given). */
export async function verifyJwt(token: string, provider: JwtProviderModel, keys: JWTVerifyGetKey, audiences: readonly string[] | null): Promise<JwtOutcome> {
  const aud = audiences ?? provider.audiences;
  try {
    const { payload } = await jwtVerify(token, keys, {
      algorithms: JWT_ALGORITHMS,
      ...(provider.issuer !== '' ? { issuer: provider.issuer } : {}),
      ...(aud.length > 0 ? { audience: [...aud] } : {}),
      clockTolerance: provider.clockSkewSeconds,
      ...(provider.requireExpiration ? { requiredClaims: ['exp'] } : {}),
    });
    return { ok: true, payload };
  } catch (err) {
    return resultOf(err);
  }
}
