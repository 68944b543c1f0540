// The one table of local-reply reasons: each reason the proxy answers for itself maps to the HTTP status
// Envoy would use, the gRPC status for gRPC callers, the x-pillion-reason value, the Envoy response flag
// for the access log, and the metric label. Nothing else invents these.

export interface Reason {
  /** Value of the x-pillion-reason header and of the `reason` metric label. */
  readonly id: string;
  readonly httpStatus: number;
  /** grpc-status sent to gRPC callers (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
  readonly grpcStatus: number;
  /** Envoy response flag (access log `response_flags`). */
  readonly flag: string;
  /** Short text for the reply body and the gRPC message. */
  readonly message: string;
}

function reason(id: string, httpStatus: number, grpcStatus: number, flag: string, message: string): Reason {
  return Object.freeze({ id, httpStatus, grpcStatus, flag, message });
}

// gRPC codes: 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED, 12 UNIMPLEMENTED, 7 PERMISSION_DENIED, 13 INTERNAL, 3 INVALID_ARGUMENT,
// 16 UNAUTHENTICATED.
export const REASONS = {
  noRoute: reason('no_route', 404, 12, 'NR', 'no route matches this request'),
  noCluster: reason('cluster_not_found', 503, 14, 'NC', 'the route names a cluster this proxy does not know'),
  noHealthyUpstream: reason('no_healthy_upstream', 503, 14, 'UH', 'no healthy upstream endpoint'),
  connectFailure: reason('connect_failure', 503, 14, 'UF', 'upstream connect failure'),
  upstreamReset: reason('upstream_reset', 503, 14, 'UR', 'upstream reset the connection before responding'),
  upstreamTimeout: reason('upstream_timeout', 504, 4, 'UT', 'upstream did not respond in time'),
  overflow: reason('overflow', 503, 14, 'UO', 'upstream circuit breaker is open'),
  retryLimit: reason('retry_limit_exceeded', 503, 14, 'URX', 'upstream failed after the retry limit'),
  streamIdleTimeout: reason('stream_idle_timeout', 408, 4, 'SI', 'stream idle timeout'),
  requestTimeout: reason('request_timeout', 408, 4, 'DT', 'request not received in time'),
  requestHeaderTimeout: reason('request_header_timeout', 408, 4, 'DT', 'request headers not received in time'),
  overload: reason('overload', 503, 14, 'OM', 'the proxy is overloaded'),
  pipelineOverflow: reason('pipeline_overflow', 503, 14, 'DPE', 'too many pipelined requests on this connection; retry on a new one'),
  badRequest: reason('bad_request', 400, 3, 'DPE', 'malformed request'),
  headersTooLarge: reason('headers_too_large', 431, 3, 'DPE', 'request headers are too large'),
  upstreamProtocolError: reason('upstream_protocol_error', 502, 13, 'UPE', 'upstream sent an invalid response'),
  // Envoy's RBAC filters: 403 with the RBAC response flag (RbacAccessDenied) and its body text.
  unauthorized: reason('unauthorized', 403, 7, 'RBAC', 'RBAC: access denied'),
  // Envoy's jwt_authn answers 401 with these bodies and sets no response flag (gRPC 16 UNAUTHENTICATED).
  jwtMissing: reason('jwt_missing', 401, 16, '-', 'Jwt is missing'),
  jwtInvalid: reason('jwt_invalid', 401, 16, '-', 'Jwt verification fails'),
  draining: reason('draining', 503, 14, 'DRAIN', 'the proxy is draining'),
  downstreamDisconnect: reason('downstream_disconnect', 499, 1, 'DC', 'the client went away'),
  // mTLS to the upstream (Envoy reports both as UF with an upstream_transport_failure_reason).
  peerIdentity: reason('peer_identity', 503, 14, 'UF', 'the upstream proved an identity the destination service may not have'),
  tlsNotReady: reason('tls_not_ready', 503, 14, 'UF', 'no mTLS certificate or trust bundle for this upstream yet (never sent in plaintext)'),
  // Transparent interception.
  passthroughLoop: reason('passthrough_loop', 502, 14, 'UF', 'the inbound passthrough came back to itself: the pod\'s rules lack the 127.0.0.6 / ::6 exemption (run pillion iptables --apply again)'),
} as const;

export type ReasonKey = keyof typeof REASONS;

const faultAborts = new Map<number, Reason>();
const directResponses = new Map<number, Reason>();

/**
 * The reply of a route's direct_response (Istio's REGISTRY_ONLY block_all route: 502): its status, and its body
 * from the config as the whole body (the reason's message is empty). No Envoy response flag.
 */
export function directResponse(httpStatus: number): Reason {
  let r = directResponses.get(httpStatus);
  if (r === undefined) {
    r = reason('direct_response', httpStatus, httpStatus === 502 || httpStatus === 503 || httpStatus === 504 ? 14 : 2, '-', '');
    directResponses.set(httpStatus, r);
  }
  return r;
}
const rateLimits = new Map<number, Reason>();

/** The reply of a fault-injected abort (envoy.filters.http.fault): its configured HTTP or gRPC status, flag FI. */
export function faultAbort(httpStatus: number, grpcStatus: number): Reason {
  const key = httpStatus * 100 + grpcStatus;
  let r = faultAborts.get(key);
  if (r === undefined) {
    r = reason('fault_abort', httpStatus, grpcStatus, 'FI', 'fault injected');
    faultAborts.set(key, r);
  }
  return r;
}

/** The reply of a request the local rate limit refused (envoy.filters.http.local_ratelimit, default 429), flag RL. */
export function rateLimited(httpStatus: number, grpcStatus: number): Reason {
  const key = httpStatus * 100 + grpcStatus;
  let r = rateLimits.get(key);
  if (r === undefined) {
    r = reason('rate_limited', httpStatus, grpcStatus, 'RL', 'rate limited: too many requests');
    rateLimits.set(key, r);
  }
  return r;
}
