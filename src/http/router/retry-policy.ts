// When a failed attempt is tried again, as Envoy's retry_on conditions define it (x-envoy-retry-on and
// x-envoy-retry-grpc-on), and how long to wait first. Pure: the router asks, nothing here holds state.
import type { RetryPolicyModel } from '../../config/model.js';
import type { Random } from '../../upstream/types.js';
import type { HeaderMap } from '../headers.js';

/** retry_on conditions as bits, parsed once when the route is translated. */
export const RETRY_ON = {
  /** Any 5xx response, and no response at all (connect failure, reset, refused stream, per-try timeout). */
  '5xx': 1 << 0,
  /** 502, 503 and 504, and no response at all. */
  'gateway-error': 1 << 1,
  /** No response: the connection or stream was reset, or the per-try timeout passed. */
  reset: 1 << 2,
  /** The connection to the endpoint could not be made (refused, connect timeout). */
  'connect-failure': 1 << 3,
  /** The upstream refused the HTTP/2 stream (REFUSED_STREAM): it never processed the request. */
  'refused-stream': 1 << 4,
  /** The statuses in retriable_status_codes. */
  'retriable-status-codes': 1 << 5,
  /** 409 Conflict. */
  'retriable-4xx': 1 << 6,
  /** A reset before the request went upstream: for us, a failed connect. */
  'reset-before-request': 1 << 7,
  // gRPC: the grpc-status of a trailers-only response (a status in the trailers after messages is never retried).
  cancelled: 1 << 8,
  'deadline-exceeded': 1 << 9,
  internal: 1 << 10,
  'resource-exhausted': 1 << 11,
  unavailable: 1 << 12,
} as const;

/** Conditions Envoy defines that we do not act on (they never trigger a retry here; loading them warns). */
export const UNSUPPORTED_RETRY_ON: ReadonlySet<string> = new Set(['retriable-headers', 'envoy-ratelimited', 'http3-post-connect-failure']);

const NO_RESPONSE = RETRY_ON['5xx'] | RETRY_ON['gateway-error'] | RETRY_ON.reset;
const GRPC_STATUS_BITS: Readonly<Record<string, number>> = {
  '1': RETRY_ON.cancelled,
  '4': RETRY_ON['deadline-exceeded'],
  '8': RETRY_ON['resource-exhausted'],
  '13': RETRY_ON.internal,
  '14': RETRY_ON.unavailable,
};

/** The bits of the known conditions in `retryOn`; the unknown ones are returned for a warning. */
export function parseRetryOn(retryOn: readonly string[]): { conditions: number; unknown: string[] } {
  let conditions = 0;
  const unknown: string[] = [];
  for (const name of retryOn) {
    const bit = (RETRY_ON as Record<string, number>)[name];
    if (bit === undefined) unknown.push(name);
    else conditions |= bit;
  }
  return { conditions, unknown };
}

/** How an attempt failed without a response the router could forward. */
export type AttemptFailure = 'connect' | 'reset' | 'refused' | 'perTryTimeout';

/** Whether a response with this status (and grpc-status, for a trailers-only gRPC response) calls for a retry. */
export function retriableResponse(policy: RetryPolicyModel, status: number, grpcStatus: string | undefined): boolean {
  const on = policy.conditions;
  if (status >= 500) {
    if ((on & RETRY_ON['5xx']) !== 0) return true;
    if ((on & RETRY_ON['gateway-error']) !== 0 && status >= 502 && status <= 504) return true;
  }
  if (status === 409 && (on & RETRY_ON['retriable-4xx']) !== 0) return true;
  if ((on & RETRY_ON['retriable-status-codes']) !== 0 && policy.retriableStatusCodes.includes(status)) return true;
  if (grpcStatus !== undefined) {
    const bit = GRPC_STATUS_BITS[grpcStatus];
    if (bit !== undefined && (on & bit) !== 0) return true;
  }
  return false;
}

/**
 * Whether the upstream's response forbids a retry whatever the policy: `x-envoy-overloaded` (an upstream proxy's
 * circuit breaker refused it: a retry adds load where there is too much already) or `x-envoy-ratelimited` (only
 * Envoy's `envoy-ratelimited` condition, not implemented here, retries it). Envoy never retries either.
 */
export function retryForbidden(headers: HeaderMap): boolean {
  return headers['x-envoy-overloaded'] !== undefined || headers['x-envoy-ratelimited'] !== undefined;
}

/** Whether an attempt that got no response calls for a retry. */
export function retriableFailure(policy: RetryPolicyModel, failure: AttemptFailure): boolean {
  const on = policy.conditions;
  switch (failure) {
    case 'connect':
      return (on & (NO_RESPONSE | RETRY_ON['connect-failure'] | RETRY_ON['reset-before-request'])) !== 0;
    case 'refused':
      return (on & (NO_RESPONSE | RETRY_ON['refused-stream'])) !== 0;
    case 'reset':
      return (on & NO_RESPONSE) !== 0;
    case 'perTryTimeout':
      // Envoy treats a per-try timeout as a 504 from the upstream.
      if ((on & NO_RESPONSE) !== 0) return true;
      return (on & RETRY_ON['retriable-status-codes']) !== 0 && policy.retriableStatusCodes.includes(504);
  }
}

/**
 * Envoy's fully jittered exponential backoff: before retry N (1, 2, ...) wait a random time in
 * [0, (2^N - 1) × base), the upper end capped at the policy's max interval.
 */
export function backoffMs(policy: RetryPolicyModel, retryNumber: number, random: Random): number {
  const ceiling = Math.min(policy.backoffMaxMs, (2 ** Math.min(retryNumber, 30) - 1) * policy.backoffBaseMs);
  return Math.floor(random() * ceiling);
}
