// Bootstrap tokens: what a proxy presents to the mesh CA to get its first certificate. A token names one workload
// identity (namespace, service account) and an expiry, and is signed with HMAC-SHA-256 under a key kept in
// --ca-dir; whoever holds the token may get certificates for that identity until it expires, and nothing else.
// Format: `pt1.<base64url JSON payload>.<base64url MAC over "pt1.<payload>">` (a compact JWS-like shape without
// the algorithm header, so there is no "alg: none" to confuse).
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { CaDirError, TOKEN_KEY_FILE, createPrivateFile, ensureCaDir, exists, readCaFile } from './files.js';

export const TOKEN_PREFIX = 'pt1';
/** A token is ~200 bytes; a larger Authorization value is refused before any parsing or MAC. */
export const MAX_TOKEN_BYTES = 2048;
export const DEFAULT_TOKEN_TTL_MS = 24 * 3600_000;
export const MAX_TOKEN_TTL_MS = 366 * 24 * 3600_000;

/** Kubernetes names: a namespace is a DNS label, a service account a DNS subdomain. Both fit a SPIFFE path segment. */
const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export interface TokenClaims {
  readonly namespace: string;
  readonly serviceAccount: string;
  /** Seconds since the epoch. */
  readonly issuedAt: number;
  readonly expiresAt: number;
}

export type TokenVerdict =
  | { readonly ok: true; readonly claims: TokenClaims }
  | { readonly ok: false; readonly reason: 'malformed' | 'bad_signature' | 'expired'; readonly message: string };

export function validName(name: string): boolean {
  return NAME.test(name);
}

function mac(key: Buffer, signed: string): Buffer {
  return createHmac('sha256', key).update(signed).digest();
}

export function mintToken(key: Buffer, identity: { namespace: string; serviceAccount: string }, ttlMs: number, nowMs: number): string {
  if (!validName(identity.namespace)) throw new RangeError(`namespace "${identity.namespace}": expected a lowercase DNS name`);
  if (!validName(identity.serviceAccount)) throw new RangeError(`service account "${identity.serviceAccount}": expected a lowercase DNS name`);
  const iat = Math.floor(nowMs / 1000);
  const payload = { ns: identity.namespace, sa: identity.serviceAccount, iat, exp: iat + Math.max(1, Math.round(ttlMs / 1000)) };
  const signed = `${TOKEN_PREFIX}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  return `${signed}.${mac(key, signed).toString('base64url')}`;
}

/** Checks size, shape, MAC (in constant time) and expiry, in that order: nothing is parsed before the MAC holds. */
export function verifyToken(key: Buffer, token: string, nowMs: number): TokenVerdict {
  if (token.length > MAX_TOKEN_BYTES) return { ok: false, reason: 'malformed', message: `token of ${token.length} characters; at most ${MAX_TOKEN_BYTES}` };
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== TOKEN_PREFIX || parts[1] === '' || parts[2] === '') {
    return { ok: false, reason: 'malformed', message: 'not a pillion bootstrap token (expected pt1.<payload>.<mac>, as `pillion token` prints)' };
  }
  const given = Buffer.from(parts[2]!, 'base64url');
  const expected = mac(key, `${parts[0]}.${parts[1]}`);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'bad_signature', message: 'token signature does not verify: forged, or minted with another CA directory\'s key' };
  }
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
  } catch {
    return { ok: false, reason: 'malformed', message: 'token payload is not JSON' };
  }
  const p = payload as Record<string, unknown>;
  if (typeof p.ns !== 'string' || typeof p.sa !== 'string' || typeof p.exp !== 'number' || typeof p.iat !== 'number' || !validName(p.ns) || !validName(p.sa)) {
    return { ok: false, reason: 'malformed', message: 'token payload lacks ns, sa, iat or exp' };
  }
  const now = Math.floor(nowMs / 1000);
  if (p.exp <= now) {
    return { ok: false, reason: 'expired', message: `token for ns/${p.ns}/sa/${p.sa} expired at ${new Date(p.exp * 1000).toISOString()}: mint a new one with \`pillion token\`` };
  }
  return { ok: true, claims: { namespace: p.ns, serviceAccount: p.sa, issuedAt: p.iat, expiresAt: p.exp } };
}

/** The token key of a CA directory, created (32 random bytes, mode 0600) when absent. */
export function loadOrCreateTokenKey(dir: string): Buffer {
  ensureCaDir(dir);
  if (!exists(dir, TOKEN_KEY_FILE)) createPrivateFile(dir, TOKEN_KEY_FILE, `${randomBytes(32).toString('base64')}\n`);
  const key = Buffer.from(readCaFile(dir, TOKEN_KEY_FILE).trim(), 'base64');
  if (key.length < 32) throw new CaDirError(`${dir}/${TOKEN_KEY_FILE}: expected at least 32 bytes of base64; delete it to have a new one made (tokens minted with it stop working)`);
  return key;
}
