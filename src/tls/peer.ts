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

/** Parses a SPIFFE ID; null when `uri` is not one (wrong scheme, no trust domain). */
export function parseSpiffeId(uri: string): PeerIdentity | null {
  if (!uri.startsWith(SPIFFE_PREFIX)) return null;
  const rest = uri.slice(SPIFFE_PREFIX.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  if (trustDomain === '') return null;
  const path = slash < 0 ? '' : rest.slice(slash);
  const m = /^\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(path);
  return { spiffeId: uri, trustDomain, namespace: m?.[1] ?? '', serviceAccount: m?.[2] ?? '' };
}

/** The SPIFFE ID of a workload. */
export function spiffeIdOf(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `${SPIFFE_PREFIX}${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}
