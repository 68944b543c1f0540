// The authorization model (Envoy's RBAC, translated by src/config/rbac.ts) and what a policy is matched against.
// Plain immutable data: the HTTP filter and the TCP hook read the same shapes and share one matcher (match.ts).
import type { HeaderMatcherModel } from '../config/model.js';
import type { PeerIdentity } from '../tls/peer.js';

/** Request headers by lower-case name, as either codec delivers them (same shape as src/http/context.ts). */
export type AuthzHeaders = Record<string, string | string[] | undefined>;

/**
 * Per-request metadata written by filters for the ones after them, by filter name (Envoy's dynamic metadata
 * `filter_metadata`): the JWT filter puts the verified payload under `envoy.filters.http.jwt_authn`.
 */
export type FilterMetadata = Record<string, Record<string, unknown>>;

/** What a policy sees of a request or a connection. A TCP connection has no method, path, headers or metadata. */
export interface AuthzRequest {
  /** The peer mTLS proved; null on plaintext (then `authenticated` principals never match). */
  readonly peer: PeerIdentity | null;
  /** The port the connection arrived on (Envoy's destination port). */
  readonly localPort: number;
  readonly method: string;
  /** The request target as sent, query included ('' for TCP). */
  readonly path: string;
  /** The request's authority (HTTP/2 :authority, HTTP/1 Host); absent or '' for TCP. */
  readonly authority?: string;
  readonly requestHeaders: AuthzHeaders | null;
  readonly filterMetadata: FilterMetadata | null;
}

export interface StringMatcherModel {
  readonly kind: 'exact' | 'prefix' | 'suffix' | 'contains';
  readonly value: string;
  readonly ignoreCase: boolean;
}

export type ValueMatcherModel =
  | { readonly kind: 'string'; readonly matcher: StringMatcherModel }
  | { readonly kind: 'present' }
  | { readonly kind: 'bool'; readonly value: boolean };

/** Envoy's MetadataMatcher: the value at `path` under filter `filter` of the request's metadata. */
export interface MetadataMatcherModel {
  readonly filter: string;
  readonly path: readonly string[];
  readonly value: ValueMatcherModel;
  readonly invert: boolean;
}

export type PermissionModel =
  | { readonly kind: 'any' }
  | { readonly kind: 'and' | 'or'; readonly rules: readonly PermissionModel[] }
  | { readonly kind: 'not'; readonly rule: PermissionModel }
  | { readonly kind: 'header'; readonly header: HeaderMatcherModel }
  /** url_path: the path without its query string. */
  | { readonly kind: 'url_path'; readonly matcher: StringMatcherModel }
  /** destination_port, or destination_port_range as [start, end). */
  | { readonly kind: 'port'; readonly start: number; readonly end: number }
  | { readonly kind: 'metadata'; readonly metadata: MetadataMatcherModel };

export type PrincipalModel =
  | { readonly kind: 'any' }
  | { readonly kind: 'and' | 'or'; readonly ids: readonly PrincipalModel[] }
  | { readonly kind: 'not'; readonly id: PrincipalModel }
  /** A peer mTLS proved, whose SPIFFE ID matches `name` (null: any such peer). */
  | { readonly kind: 'authenticated'; readonly name: StringMatcherModel | null }
  | { readonly kind: 'header'; readonly header: HeaderMatcherModel }
  | { readonly kind: 'url_path'; readonly matcher: StringMatcherModel }
  | { readonly kind: 'metadata'; readonly metadata: MetadataMatcherModel };

/** A policy matches when any permission and any principal match (Envoy's rule). */
export interface PolicyModel {
  readonly name: string;
  readonly permissions: readonly PermissionModel[];
  readonly principals: readonly PrincipalModel[];
}

export type RbacAction = 'ALLOW' | 'DENY' | 'LOG';

/** envoy.config.rbac.v3.RBAC: policies in name order, as Envoy keeps them. */
export interface RbacRulesModel {
  readonly action: RbacAction;
  readonly policies: readonly PolicyModel[];
}

/** The HTTP or network RBAC filter: enforced rules (null: allow all) and shadow rules (only counted and logged). */
export interface RbacFilterModel {
  readonly statPrefix: string;
  readonly rules: RbacRulesModel | null;
  readonly shadow: RbacRulesModel | null;
}

/** Where a verified token's payload goes in the request metadata (Envoy's filter name, our payload key). */
export const JWT_METADATA_FILTER = 'envoy.filters.http.jwt_authn';

export type JwksSourceModel =
  | { readonly kind: 'inline'; readonly json: string }
  | { readonly kind: 'file'; readonly path: string }
  | {
      readonly kind: 'remote';
      readonly uri: string;
      readonly timeoutMs: number;
      /** How long fetched keys are used before they are fetched again (Envoy's cache_duration, default 10 min). */
      readonly cacheMs: number;
    };

/** One JwtProvider: where tokens come from, what they must say, and where their keys are. */
export interface JwtProviderModel {
  readonly name: string;
  /** Required `iss` ('' = any). */
  readonly issuer: string;
  /** `aud` must hold one of these (empty = no audience check, as Envoy). */
  readonly audiences: readonly string[];
  readonly jwks: JwksSourceModel;
  /** Headers to read the token from (lower-case name, value prefix); default Authorization: Bearer. */
  readonly fromHeaders: readonly { readonly name: string; readonly prefix: string }[];
  /** Keep the token header on the forwarded request (Envoy's `forward`, default false: removed). */
  readonly forward: boolean;
  /** The metadata key of the verified payload (payload_in_metadata; '' = not written). */
  readonly payloadInMetadata: string;
  readonly clockSkewSeconds: number;
  readonly requireExpiration: boolean;
}

/** A JwtRequirement: one provider, any of several, or a token that may be absent (requires_all is refused). */
export type JwtRequirementModel =
  | { readonly kind: 'provider'; readonly provider: string; readonly audiences: readonly string[] | null }
  | { readonly kind: 'any'; readonly requirements: readonly JwtRequirementModel[] }
  | { readonly kind: 'allow_missing' }
  | { readonly kind: 'allow_missing_or_failed' };

/** A RequirementRule: requests whose path matches (prefix or exact) need `requires` (null: nothing). */
export interface JwtRuleModel {
  readonly match: { readonly kind: 'prefix' | 'path'; readonly value: string };
  readonly requires: JwtRequirementModel | null;
}

export interface JwtAuthnModel {
  readonly providers: ReadonlyMap<string, JwtProviderModel>;
  readonly rules: readonly JwtRuleModel[];
}
