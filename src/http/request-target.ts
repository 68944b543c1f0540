// The absolute form of an HTTP/1.1 request-target (RFC 9112 §3.2.2), as a client configured with HTTP_PROXY sends
// it: one parser for the exchange path (Exchange.startH1) and Upgrade (proxyUpgrade), so both route alike.

/** An absolute-form target split: its scheme (lowercased), its authority and its path (origin-form). */
export interface AbsoluteTarget {
  /** What `:scheme` route matchers see: the client's choice, no proof of TLS. */
  readonly scheme: string;
  /** Wins over Host (RFC 9112 §3.2.2); '' when the target has none ('http:///x'). */
  readonly authority: string;
  /** What routes match and what goes upstream; '/' when the target has no path. */
  readonly path: string;
}

/** `target` split if it is in absolute form; null for origin-form ('/…'), asterisk-form and anything else. */
export function parseAbsoluteForm(target: string): AbsoluteTarget | null {
  // Origin-form, by far the common case, costs one char test and allocates nothing.
  if (target.charCodeAt(0) === 47 /* '/' */ || target === '*') return null;
  const schemeEnd = target.indexOf('://');
  if (schemeEnd <= 0) return null;
  const pathStart = target.indexOf('/', schemeEnd + 3);
  return {
    scheme: target.slice(0, schemeEnd).toLowerCase(),
    authority: pathStart < 0 ? target.slice(schemeEnd + 3) : target.slice(schemeEnd + 3, pathStart),
    path: pathStart < 0 ? '/' : target.slice(pathStart),
  };
}
