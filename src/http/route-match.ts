// Route matching (pure): virtual host by authority, route by path/method/headers, weighted cluster, hash key.
import type {
  HashPolicyModel,
  HeaderMatcherModel,
  RouteActionModel,
  RouteConfigModel,
  RouteModel,
  VirtualHostModel,
} from '../config/model.js';
import { combineHashes, hashString } from '../upstream/lb/hash.js';
import type { Random } from '../upstream/types.js';

/** Read access to request headers by lowercase name, so HTTP/1 and HTTP/2 header objects are used without copying. */
export interface HeaderSource {
  get(name: string): string | undefined;
}

/**
 * Adapts a header object (an HTTP/1 head's, or an HTTP/2 head's HeaderMap, which holds no pseudo headers). One
 * instance is meant to be reused: `reset(target, authority, scheme)` points it at the next request's headers.
 * `:authority` is the request's authority when given (the exchange's: HTTP/2's :authority, HTTP/1's Host or
 * absolute-form target), else a `:authority` key, else `host`; `:scheme` is the request's scheme when given
 * (HTTP/2's :scheme; HTTP/1's from the connection, as Envoy sets it), else a `:scheme` key. Repeated headers are
 * joined with "," (Envoy's rule for matching on multi-valued headers).
 */
export class RecordHeaderSource implements HeaderSource {
  target: Record<string, string | string[] | undefined>;
  authority = '';
  scheme = '';

  constructor(target: Record<string, string | string[] | undefined> = {}) {
    this.target = target;
  }

  reset(target: Record<string, string | string[] | undefined>, authority = '', scheme = ''): this {
    this.target = target;
    this.authority = authority;
    this.scheme = scheme;
    return this;
  }

  get(name: string): string | undefined {
    let v = this.target[name];
    if (v === undefined) {
      if (name === ':authority') v = this.authority !== '' ? this.authority : this.target.host;
      else if (name === ':scheme' && this.scheme !== '') v = this.scheme;
    }
    if (v === undefined || typeof v === 'string') return v;
    return v.length === 0 ? undefined : v.length === 1 ? v[0] : v.join(',');
  }
}

const shared = new RecordHeaderSource();

/**
 * A HeaderSource over `obj` (and the request's `authority` and `scheme`, see RecordHeaderSource) without
 * allocating: returns one shared instance re-pointed at `obj`. Valid only until the next call, so use it
 * synchronously (match, then drop); hold your own RecordHeaderSource otherwise.
 */
export function headerSourceOf(obj: Record<string, string | string[] | undefined>, authority = '', scheme = ''): HeaderSource {
  return shared.reset(obj, authority, scheme);
}

// ---------------------------------------------------------------------------------------------------------
// Virtual host selection

/** Lookups cached per index; cleared when full so a flood of distinct Host values cannot grow memory. */
export const AUTHORITY_CACHE_LIMIT = 4096;

interface Wildcard {
  readonly part: string;
  readonly vh: VirtualHostModel;
}

/** Domain index of one RouteConfiguration, built once; per request a lookup is one Map get once warm. */
export class RouteIndex {
  private readonly exactDomains = new Map<string, VirtualHostModel>();
  /** `*.foo.com` / `*-bar.foo.com`: the part after `*`, longest first. */
  private readonly suffixes: Wildcard[] = [];
  /** `foo.*`: the part before `*`, longest first. */
  private readonly prefixes: Wildcard[] = [];
  private readonly fallback: VirtualHostModel | null = null;
  private readonly cache = new Map<string, VirtualHostModel | null>();

  /** The `*` virtual host, or null. */
  get wildcard(): VirtualHostModel | null {
    return this.fallback;
  }

  get hasExactDomains(): boolean {
    return this.exactDomains.size > 0;
  }

  /** The virtual host with exactly this (lower-case) domain, or null: no wildcards, no `*`. */
  exact(domain: string): VirtualHostModel | null {
    return this.exactDomains.get(domain) ?? null;
  }

  constructor(readonly config: RouteConfigModel) {
    let fallback: VirtualHostModel | null = null;
    for (const vh of config.virtualHosts) {
      for (const raw of vh.domains) {
        const d = raw.toLowerCase();
        // The first virtual host to claim a domain keeps it (xDS forbids duplicates; be deterministic anyway).
        if (d === '*') fallback ??= vh;
        else if (d.startsWith('*')) this.suffixes.push({ part: d.slice(1), vh });
        else if (d.endsWith('*')) this.prefixes.push({ part: d.slice(0, -1), vh });
        else if (!this.exactDomains.has(d)) this.exactDomains.set(d, vh);
      }
    }
    // Stable sort keeps config order among equal lengths.
    this.suffixes.sort((a, b) => b.part.length - a.part.length);
    this.prefixes.sort((a, b) => b.part.length - a.part.length);
    this.fallback = fallback;
  }

  select(authority: string): VirtualHostModel | null {
    const hit = this.cache.get(authority);
    if (hit !== undefined) return hit;
    const vh = this.resolve(authority);
    if (this.cache.size >= AUTHORITY_CACHE_LIMIT) this.cache.clear();
    this.cache.set(authority, vh);
    return vh;
  }

  private resolve(authority: string): VirtualHostModel | null {
    const host = authority.toLowerCase();
    const found = this.matchDomains(host);
    if (found !== null) return found;
    // An authority with a port also matches domains written without one (`backend:8080` → `backend`).
    const bare = stripPort(host);
    if (bare !== host) {
      const again = this.matchDomains(bare);
      if (again !== null) return again;
    }
    return this.fallback;
  }

  /** Envoy's order: exact, then longest suffix wildcard, then longest prefix wildcard. */
  private matchDomains(host: string): VirtualHostModel | null {
    const exact = this.exactDomains.get(host);
    if (exact !== undefined) return exact;
    // The wildcard must stand for at least one character (Envoy: `*.foo.com` does not match `.foo.com`).
    for (const w of this.suffixes) if (host.length > w.part.length && host.endsWith(w.part)) return w.vh;
    for (const w of this.prefixes) if (host.length > w.part.length && host.startsWith(w.part)) return w.vh;
    return null;
  }
}

/** `host:port` → `host`, `[v6]:port` → `[v6]`; anything else (bare IPv6, no port) unchanged. */
export function stripPort(authority: string): string {
  const colon = authority.lastIndexOf(':');
  if (colon <= 0 || colon === authority.length - 1) return authority;
  for (let i = colon + 1; i < authority.length; i++) {
    const c = authority.charCodeAt(i);
    if (c < 48 || c > 57) return authority;
  }
  if (authority.charCodeAt(0) === 91 /* [ */) {
    return authority.charCodeAt(colon - 1) === 93 /* ] */ ? authority.slice(0, colon) : authority;
  }
  // More than one colon without brackets is a bare IPv6 address, not host:port.
  return authority.indexOf(':') === colon ? authority.slice(0, colon) : authority;
}

const indexes = new WeakMap<RouteConfigModel, RouteIndex>();

/** The RouteIndex of an (immutable) RouteConfigModel, built on first use and kept as long as the config lives. */
export function routeIndexOf(config: RouteConfigModel): RouteIndex {
  let idx = indexes.get(config);
  if (idx === undefined) {
    idx = new RouteIndex(config);
    indexes.set(config, idx);
  }
  return idx;
}

export function selectVirtualHost(config: RouteConfigModel, authority: string): VirtualHostModel | null {
  return routeIndexOf(config).select(authority);
}

// ---------------------------------------------------------------------------------------------------------
// Route selection

/** First route of `vh` whose match fits the request, or null (→ no_route). */
export function matchRoute(vh: VirtualHostModel, method: string, path: string, headers: HeaderSource): RouteModel | null {
  const routes = vh.routes;
  for (let i = 0; i < routes.length; i++) {
    const r = routes[i]!;
    if (pathMatches(r.match.kind, r.match.value, r.match.caseSensitive, path) && headersMatch(r.match.headers, method, path, headers)) {
      return r;
    }
  }
  return null;
}

function pathMatches(kind: 'prefix' | 'path', value: string, caseSensitive: boolean, path: string): boolean {
  if (kind === 'prefix') {
    if (value.length === 0) return true;
    return caseSensitive ? path.startsWith(value) : startsWithIgnoreCase(path, value);
  }
  // `path` is exact on the path without its query string (Envoy: the query is not part of the match).
  const q = path.indexOf('?');
  const len = q < 0 ? path.length : q;
  if (len !== value.length) return false;
  return caseSensitive ? path.startsWith(value) : startsWithIgnoreCase(path, value);
}

/** ASCII case-insensitive startsWith without lowercasing either string (no allocation). */
function startsWithIgnoreCase(s: string, prefix: string): boolean {
  if (s.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) {
    let a = s.charCodeAt(i);
    let b = prefix.charCodeAt(i);
    if (a === b) continue;
    if (a >= 65 && a <= 90) a += 32;
    if (b >= 65 && b <= 90) b += 32;
    if (a !== b) return false;
  }
  return true;
}

function headersMatch(matchers: readonly HeaderMatcherModel[], method: string, path: string, headers: HeaderSource): boolean {
  for (let i = 0; i < matchers.length; i++) {
    const m = matchers[i]!;
    // Pseudo-headers come from the request line for HTTP/1, where the header object has no such keys.
    const value = m.name === ':method' ? method : m.name === ':path' ? path : headers.get(m.name);
    if (headerMatches(m, value) === m.invert) return false;
  }
  return true;
}

/** Un-inverted result of one matcher; an absent header matches only `present` (as Envoy's HeaderUtility). */
export function headerMatches(m: HeaderMatcherModel, value: string | undefined): boolean {
  if (value === undefined) return false;
  switch (m.kind) {
    case 'present':
      return true;
    case 'exact':
      return value === m.value;
    case 'prefix':
      return value.startsWith(m.value);
    case 'suffix':
      return value.endsWith(m.value);
    case 'contains':
      return value.includes(m.value);
  }
}

/** Envoy's weighted_clusters pick: a random point in [0, totalWeight) against the running sum of weights. */
export function pickWeightedCluster(action: RouteActionModel, random: Random): string {
  const clusters = action.clusters;
  if (clusters.length === 1) return clusters[0]!.name;
  if (clusters.length === 0) return '';
  let total = action.totalWeight;
  if (!(total > 0)) {
    total = 0;
    for (let i = 0; i < clusters.length; i++) total += clusters[i]!.weight;
    if (!(total > 0)) return clusters[0]!.name;
  }
  const x = random() * total;
  let acc = 0;
  for (let i = 0; i < clusters.length; i++) {
    acc += clusters[i]!.weight;
    if (x < acc) return clusters[i]!.name;
  }
  return clusters[clusters.length - 1]!.name;
}

/**
 * The request's hash key for ring_hash, or undefined when no policy produced one (→ random pick). Envoy's rules:
 * policies run in order, results are folded with combineHashes, and a `terminal` policy that produced a value
 * ends the evaluation.
 */
export function computeRequestHash(
  policies: readonly HashPolicyModel[],
  headers: HeaderSource,
  sourceIp: string,
): number | undefined {
  let hash: number | undefined;
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i]!;
    let h: number | undefined;
    if (p.kind === 'header') {
      const v = headers.get(p.name);
      if (v !== undefined) h = hashString(v);
    } else if (p.kind === 'cookie') {
      const c = headers.get('cookie');
      if (c !== undefined) h = hashCookie(c, p.name);
    } else if (sourceIp.length > 0) {
      h = hashString(sourceIp);
    }
    if (h === undefined) continue;
    hash = hash === undefined ? h : combineHashes(hash, h);
    if (p.terminal) break;
  }
  return hash;
}

/** Hash of the value of cookie `name` in a Cookie header (RFC 6265 `a=1; b=2`), hashed in place; undefined if absent. */
export function hashCookie(header: string, name: string): number | undefined {
  const len = header.length;
  let pos = 0;
  while (pos < len) {
    while (pos < len && (header.charCodeAt(pos) === 32 || header.charCodeAt(pos) === 59)) pos++; // ' ' and ';'
    const end = header.indexOf(';', pos);
    const stop = end < 0 ? len : end;
    if (header.startsWith(name, pos) && header.charCodeAt(pos + name.length) === 61 /* = */ && pos + name.length < stop) {
      let vs = pos + name.length + 1;
      let ve = stop;
      while (ve > vs && header.charCodeAt(ve - 1) === 32) ve--;
      // A quoted cookie-value hashes as its content (RFC 6265 §4.1.1 allows DQUOTE around it).
      if (ve - vs >= 2 && header.charCodeAt(vs) === 34 && header.charCodeAt(ve - 1) === 34) {
        vs++;
        ve--;
      }
      return hashString(header, vs, ve);
    }
    pos = stop + 1;
  }
  return undefined;
}
