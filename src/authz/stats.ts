// Where authorization and request authentication report: counters bound once per filter (never looked up per
// request) and warnings the sink rate-limits. src/observability/authz-stats.ts is the proxy's implementation.

export type RbacDecision = 'allowed' | 'denied' | 'shadow_allowed' | 'shadow_denied';

/** Why a token was refused, or that it passed; a bounded metric label. */
export type JwtResult =
  | 'verified'
  | 'missing'
  | 'malformed'
  | 'alg_not_allowed'
  | 'bad_signature'
  | 'unknown_key'
  | 'expired'
  | 'not_yet_valid'
  | 'no_expiration'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'jwks_unavailable';

export interface CounterLike {
  inc(): void;
}

/** The policy label when no policy matched (an allow-list miss, or a request a deny-list let through). */
export const NO_POLICY_LABEL = '-';

export interface AuthzSink {
  rbacCounter(protocol: 'http' | 'tcp', decision: RbacDecision, policy: string): CounterLike;
  jwtCounter(provider: string, result: JwtResult): CounterLike;
  /** A load of a JWKS from a URL or file ended (`source`: the URI or path). */
  jwksFetch(source: string, ok: boolean, detail: string): void;
  /** A warning; the sink logs the first of each `key` and then at most one per interval, counting the rest. */
  warn(key: string, fields: Record<string, unknown>, message: string): void;
}

const NOOP_COUNTER: CounterLike = { inc() {} };

/** For chains built without a sink (unit tests of other filters). */
export const NO_AUTHZ_SINK: AuthzSink = {
  rbacCounter: () => NOOP_COUNTER,
  jwtCounter: () => NOOP_COUNTER,
  jwksFetch() {},
  warn() {},
};
