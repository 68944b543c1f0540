// envoy.filters.http.jwt_authn: requests on a path a rule covers must carry a JWT its requirement accepts (a
// provider's issuer, audiences and JWKS). A verified payload goes into the request's metadata for RBAC
// (requestPrincipals); a missing token gets 401 jwt_missing, a refused one 401 jwt_invalid, each counted by
// provider and result and logged (rate-limited). Verification is async (WebCrypto, and a JWKS may need a fetch):
// the request waits on a check object; a request on a path no rule covers pays one loop over the rules.
import { decodeJwt } from 'jose';
import { JWKS_CACHE, JwksUnavailable, type JwksCache } from '../../authz/jwks.js';
import { verifyJwt, type JwtOutcome } from '../../authz/jwt-verify.js';
import { JWT_METADATA_FILTER, type JwksSourceModel, type JwtAuthnModel, type JwtProviderModel, type JwtRequirementModel } from '../../authz/model.js';
import type { AuthzSink, CounterLike, JwtResult } from '../../authz/stats.js';
import { REASONS } from '../../reasons.js';
import type { FilteredRequest, HttpFilter } from './filter.js';

const RESULTS: readonly JwtResult[] = [
  'verified', 'missing', 'malformed', 'alg_not_allowed', 'bad_signature', 'unknown_key', 'expired', 'not_yet_valid',
  'no_expiration', 'wrong_issuer', 'wrong_audience', 'jwks_unavailable',
];
/** Tokens longer than this are refused unread (a header of 60 KiB is no token a provider issued). */
const MAX_TOKEN_LENGTH = 16 * 1024;

/** A token found for a provider, and where (so it can be removed when the provider does not forward it). */
interface Found {
  readonly token: string;
  readonly header: string;
  /**
   * How many times the header came. More than once is refused as malformed (Envoy joins the values with commas,
   * which no token parses as): verifying the first while the app may read another would pass an unverified token.
   */
  readonly count: number;
}

function tokenFor(request: FilteredRequest, provider: JwtProviderModel): Found | null {
  const headers = request.requestHeaders;
  if (headers === null) return null;
  for (const h of provider.fromHeaders) {
    const raw = headers[h.name];
    if (raw === undefined) continue;
    if (typeof raw !== 'string') {
      if (raw.length > 1) return { token: '', header: h.name, count: raw.length };
      if (raw.length === 0) continue;
    }
    const value = typeof raw === 'string' ? raw : raw[0]!;
    if (value.length < h.prefix.length) continue;
    // The auth scheme is case-insensitive (RFC 9110 §11.1).
    if (value.slice(0, h.prefix.length).toLowerCase() !== h.prefix.toLowerCase()) continue;
    const token = value.slice(h.prefix.length).trim();
    if (token !== '') return { token, header: h.name, count: 1 };
  }
  return null;
}

/**
 * The `iss` of a token before verification, to pick its provider; null when the token cannot be read (then every
 * provider tries it, and verification says how it is malformed).
 */
function unverifiedIssuer(token: string): string | null {
  try {
    const iss = decodeJwt(token).iss;
    return typeof iss === 'string' ? iss : '';
  } catch {
    return null;
  }
}

/** One request's check: evaluates the requirement, then lets the request go on or answers it. */
class JwtCheck {
  /** The worst refusal seen: an invalid token outranks a missing one in the answer. */
  private failure: { provider: string; result: JwtResult; detail: string } | null = null;

  constructor(
    private readonly filter: JwtAuthnFilter,
    private readonly request: FilteredRequest,
  ) {}

  async run(requirement: JwtRequirementModel): Promise<void> {
    let ok: boolean;
    try {
      ok = await this.satisfies(requirement);
    } catch (err) {
      // Nothing should throw here; if something does, the request is refused, never left hanging.
      this.refuse('-', 'malformed', err instanceof Error ? err.message : String(err));
      ok = false;
    }
    const request = this.request;
    if (request.ended) return;
    if (ok) return request.continueFilters();
    const f = this.failure;
    request.localReply(f === null || f.result === 'missing' ? REASONS.jwtMissing : REASONS.jwtInvalid);
  }

  private refuse(provider: string, result: JwtResult, detail: string): void {
    if (this.failure === null || this.failure.result === 'missing') this.failure = { provider, result, detail };
  }

  private async satisfies(r: JwtRequirementModel): Promise<boolean> {
    switch (r.kind) {
      case 'provider':
        return this.verifyWith(this.filter.provider(r.provider), r.audiences, true);
      case 'any':
        for (const sub of r.requirements) if (await this.satisfies(sub)) return true;
        return false;
      case 'allow_missing':
      case 'allow_missing_or_failed': {
        // A token is verified by the providers of its issuer (as Envoy picks them); none present passes; a bad
        // one fails only under allow_missing.
        let present = false;
        let tried = false;
        for (const p of this.filter.providers()) {
          const found = tokenFor(this.request, p);
          if (found === null) continue;
          present = true;
          const iss = unverifiedIssuer(found.token);
          if (p.issuer !== '' && iss !== null && p.issuer !== iss) continue;
          tried = true;
          if (await this.verifyWith(p, null, false)) return true;
        }
        if (present && !tried) {
          this.filter.count('-', 'wrong_issuer');
          this.refuse('-', 'wrong_issuer', 'no provider for the issuer of the token');
          this.filter.warnRefused('-', 'wrong_issuer', 'no provider for the issuer of the token');
        }
        return !present || r.kind === 'allow_missing_or_failed';
      }
    }
  }

  private async verifyWith(provider: JwtProviderModel, audiences: readonly string[] | null, required: boolean): Promise<boolean> {
    const found = tokenFor(this.request, provider);
    if (found === null) {
      if (required) this.filter.count(provider.name, 'missing');
      this.refuse(provider.name, 'missing', '');
      return false;
    }
    let outcome: JwtOutcome;
    if (found.count > 1) {
      outcome = { ok: false, result: 'malformed', detail: `${found.count} ${found.header} headers: a token must come in one` };
    } else if (found.token.length > MAX_TOKEN_LENGTH) {
      outcome = { ok: false, result: 'malformed', detail: `token of ${found.token.length} characters` };
    } else {
      try {
        outcome = await verifyJwt(found.token, provider, await this.filter.keys(provider.jwks), audiences);
      } catch (err) {
        outcome = { ok: false, result: 'jwks_unavailable', detail: err instanceof JwksUnavailable ? err.message : String(err) };
      }
    }
    this.filter.count(provider.name, outcome.ok ? 'verified' : outcome.result);
    if (!outcome.ok) {
      this.refuse(provider.name, outcome.result, outcome.detail);
      this.filter.warnRefused(provider.name, outcome.result, outcome.detail);
      return false;
    }
    const request = this.request;
    if (provider.payloadInMetadata !== '') {
      const metadata = (request.filterMetadata ??= {});
      (metadata[JWT_METADATA_FILTER] ??= {})[provider.payloadInMetadata] = outcome.payload;
    }
    // Envoy's default (forward: false): the upstream does not see the token.
    if (!provider.forward && request.requestHeaders !== null) delete request.requestHeaders[found.header];
    return true;
  }
}

export class JwtAuthnFilter implements HttpFilter {
  private readonly counters = new Map<string, CounterLike[]>();
  private readonly providerList: readonly JwtProviderModel[];
  private readonly report: (source: JwksSourceModel, ok: boolean, detail: string) => void;

  constructor(
    private readonly name: string,
    private readonly model: JwtAuthnModel,
    private readonly sink: AuthzSink,
    private readonly cache: JwksCache = JWKS_CACHE,
  ) {
    this.providerList = [...model.providers.values()];
    for (const p of this.providerList) this.counters.set(p.name, RESULTS.map((r) => sink.jwtCounter(p.name, r)));
    this.report = (source, ok, detail) => sink.jwksFetch(source.kind === 'remote' ? source.uri : source.kind === 'file' ? source.path : 'inline', ok, detail);
  }

  onRequest(request: FilteredRequest): boolean {
    const requirement = this.requirementFor(request.path);
    if (requirement === null) return true;
    // run() answers every outcome itself (a throw included); the catch only satisfies the floating-promise rule.
    new JwtCheck(this, request).run(requirement).catch(ignore);
    return false;
  }

  /** The requirement of the first rule whose path match fits (Envoy's order); null when none applies. */
  private requirementFor(target: string): JwtRequirementModel | null {
    const rules = this.model.rules;
    if (rules.length === 0) return null;
    const q = target.indexOf('?');
    const path = q < 0 ? target : target.slice(0, q);
    for (let i = 0; i < rules.length; i++) {
      const m = rules[i]!.match;
      if (m.kind === 'prefix' ? path.startsWith(m.value) : path === m.value) return rules[i]!.requires;
    }
    return null;
  }

  provider(name: string): JwtProviderModel {
    return this.model.providers.get(name)!;
  }

  providers(): readonly JwtProviderModel[] {
    return this.providerList;
  }

  keys(source: JwksSourceModel) {
    return this.cache.keys(source, this.report);
  }

  count(provider: string, result: JwtResult): void {
    let counters = this.counters.get(provider);
    // '-': a token no provider of this filter takes (bound on first use, then kept).
    if (counters === undefined) this.counters.set(provider, (counters = RESULTS.map((r) => this.sink.jwtCounter(provider, r))));
    counters[RESULTS.indexOf(result)]!.inc();
  }

  warnRefused(provider: string, result: JwtResult, detail: string): void {
    this.sink.warn(`jwt ${this.name} ${provider} ${result}`, { filter: this.name, provider, result, detail }, `jwt_authn: token refused (${result})`);
  }
}

function ignore(): void {}
