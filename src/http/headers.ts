// Header rules for forwarding: hop-by-hop removal (RFC 9110 §7.6.1), x-forwarded-for, x-request-id, and the
// conversion of upstream response heads into one plain shape for both downstream codecs.
import { newRequestId } from './request-id.js';
import type { IncomingHttpHeaders } from 'node:http';

export type HeaderMap = Record<string, string | string[]>;

/**
 * Header maps inherit nothing: in a plain `{}`, a header named `constructor` or `toString` found Object's
 * member and one request crashed the proxy, and `__proto__` rewired the map. Objects made by a constructor
 * whose prototype is `Object.create(null)` stay in V8's fast mode (a bare `Object.create(null)` does not).
 */
const HeaderMapObject = function HeaderMapObject() {} as unknown as new () => HeaderMap;
HeaderMapObject.prototype = Object.create(null) as object;

export function newHeaderMap(): HeaderMap {
  return new HeaderMapObject();
}

/** Connection-specific headers: never forwarded, in either direction (HTTP/2 forbids them outright). */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect', // the proxy answers 100-continue itself
  'http2-settings',
  'host', // carried as the authority instead
]);

/** Names listed in Connection headers are hop-by-hop too; several lines are one list (RFC 9110 §5.3). */
function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined || value === '' || value === 'keep-alive' || value === 'close') return null;
  const tokens = new Set<string>();
  const lines = typeof value === 'string' ? [value] : value;
  for (const line of lines) {
    for (const raw of line.split(',')) {
      const token = raw.trim().toLowerCase();
      if (token !== '') tokens.add(token);
    }
  }
  return tokens;
}

export interface ForwardContext {
  /** Downstream peer address, appended to x-forwarded-for. */
  readonly remoteAddress: string;
  readonly generateRequestId: boolean;
  /** Keep `te: trailers` (gRPC over HTTP/2 requires it). */
  readonly keepTeTrailers: boolean;
}

/**
 * Builds the upstream request headers from a downstream header object (HTTP/1 `req.headers` or an HTTP/2
 * header object): drops hop-by-hop and pseudo headers, appends x-forwarded-for, ensures x-request-id.
 * Returns the request id it used (for the access log).
 */
export function buildUpstreamHeaders(
  incoming: IncomingHttpHeaders,
  ctx: ForwardContext,
  out: HeaderMap,
): string {
  const dropped = connectionTokens(incoming.connection as string | string[] | undefined);
  let requestId = '';
  for (const name in incoming) {
    const value = incoming[name];
    if (value === undefined) continue;
    if (name.charCodeAt(0) === 58 /* ':' */) continue;
    if (HOP_BY_HOP.has(name)) {
      if (name === 'te' && ctx.keepTeTrailers && value === 'trailers') out.te = 'trailers';
      continue;
    }
    if (dropped !== null && dropped.has(name)) continue;
    if (name === 'x-forwarded-for') continue;
    if (name === 'x-request-id') requestId = Array.isArray(value) ? value[0]! : value;
    out[name] = value;
  }
  const xff = incoming['x-forwarded-for'];
  out['x-forwarded-for'] = xff === undefined || xff === '' ? ctx.remoteAddress : `${xff}, ${ctx.remoteAddress}`;
  if (requestId === '' && ctx.generateRequestId) {
    requestId = newRequestId();
    out['x-request-id'] = requestId;
  }
  return requestId;
}

/**
 * The hop-by-hop names a well-formed HTTP/2 block can still carry: the HPACK decoder (src/h2/hpack.ts) marks the
 * connection-specific ones (connection, keep-alive, proxy-connection, transfer-encoding, upgrade) malformed, and
 * the session resets such a stream before anyone sees its head.
 */
/**
 * Fields a client's request trailers never carry upstream (RFC 9110 §6.5.1: framing, routing, authentication,
 * request controls and content format are evaluated before the body): besides the hop-by-hop ones, those an
 * upstream that merges trailers into the head (RFC 9110 §6.5.1 allows it; old WEBrick merged them all) would take
 * for a second content-length or host, or for the identity and client address the proxy vouches for.
 */
const TRAILER_FORBIDDEN: ReadonlySet<string> = new Set([
  ...HOP_BY_HOP,
  'content-length',
  'content-encoding',
  'content-type',
  'content-range',
  'max-forwards',
  'cache-control',
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-client-cert',
  'x-request-id',
  'traceparent',
  'tracestate',
]);

/**
 * A client's request trailers made forwardable, in place (names lower-case: HTTP/2's as received, HTTP/1's from
 * headerMapFromFlat): fields in TRAILER_FORBIDDEN are dropped, as a header name the client may not set by trailer.
 * Null when nothing is left, so no empty trailer section goes upstream.
 */
export function forwardableRequestTrailers(trailers: HeaderMap): HeaderMap | null {
  let left = 0;
  for (const name in trailers) {
    if (TRAILER_FORBIDDEN.has(name)) delete trailers[name];
    else left++;
  }
  return left === 0 ? null : trailers;
}

const H2_HOP_BY_HOP: readonly string[] = [...HOP_BY_HOP].filter(
  (name) => name !== 'connection' && name !== 'keep-alive' && name !== 'proxy-connection' && name !== 'transfer-encoding' && name !== 'upgrade',
);

/**
 * An upstream HTTP/2 response head or trailers (regular fields only: src/h2 keeps pseudo headers apart) made
 * forwardable, in place: `te`, `trailer`, `host` and the like are dropped. A map that has none (nearly all) is
 * untouched, so it keeps V8's fast shape.
 */
export function dropHopByHop(headers: HeaderMap): HeaderMap {
  for (let i = 0; i < H2_HOP_BY_HOP.length; i++) {
    const name = H2_HOP_BY_HOP[i]!;
    if (headers[name] !== undefined) delete headers[name];
  }
  return headers;
}
