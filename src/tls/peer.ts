// Who is on the other end of a connection, as mTLS proved it: the SPIFFE ID of its certificate's URI SAN
// (spiffe://<trust domain>/ns/<namespace>/sa/<service account>). Authorization, x-forwarded-client-cert, the access
// log and metrics read it; null on a plaintext connection.

export interface PeerIdentity {
  /** The full SPIFFE ID, the RBAC "principal" (Istio's `source.principal` without the scheme is not used here). */
  readonly spiffeId: string;
  readonly trustDomain: string;
  /** From the /ns/<namespace>/sa/<account> path; empty when the ID has another shape. */
  readonly namespace: string;
  readonly serviceAccount: string;
}

const SPIFFE_PREFIX = 'spiffe://';
/** The SPIFFE ID spec's character sets: trust domain [a-z0-9._-], path segments [A-Za-z0-9._-]. */
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const WORKLOAD_PATH = /^\/ns\/([^/]+)\/sa\/([^/]+)$/;

/**
 * Parses a SPIFFE ID; null when `uri` is not a valid one (the SPIFFE ID spec, as go-spiffe checks it): the scheme
 * in lower case, a trust domain of [a-z0-9._-] only (no port, no user), and a path of non-empty segments of
 * [A-Za-z0-9._-] other than `.` and `..` (so no trailing slash, percent-escape, query or fragment). An ID that only
 * looks like one (`/ns/prod/../default/sa/x`, `/ns/prod//sa/x`) would otherwise meet a namespace rule's prefix.
 */
export function parseSpiffeId(uri: string): PeerIdentity | null {
  if (!uri.startsWith(SPIFFE_PREFIX)) return null;
  const rest = uri.slice(SPIFFE_PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  if (!TRUST_DOMAIN.test(trustDomain)) return null;
  const path = slash < 0 ? '' : rest.slice(slash);
  if (path !== '') {
    const segments = path.split('/');
    for (let i = 1; i < segments.length; i++) {
      const seg = segments[i]!;
      if (!SEGMENT.test(seg) || seg === '.' || seg === '..') return null;
    }
  }
  const m = WORKLOAD_PATH.exec(path);
  return { spiffeId: uri, trustDomain, namespace: m?.[1] ?? '', serviceAccount: m?.[2] ?? '' };
}

/** The SPIFFE ID of a workload. */
export function spiffeIdOf(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `${SPIFFE_PREFIX}${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}
