// The HTTP filter chain: filters run in order on each request's head after it was routed, then the router (the
// exchange's forwarding) takes it. A filter lets the request go on, answers it itself, or holds it for a while.
// Filters are built once per listener chain and shared by its requests: per-request state lives on the exchange.
import type { RouteModel } from '../../config/model.js';
import type { AuthzRequest, FilterMetadata } from '../../authz/model.js';
import type { Reason } from '../../reasons.js';
import type { RequestHeaders } from '../context.js';

/** Told when a hold a filter asked for ends, whether the request goes on or ended meanwhile (max_active_faults). */
export interface HoldTracker {
  holdEnded(): void;
}

/**
 * What a filter may do with the request it is looking at (implemented by the exchange). As an AuthzRequest it
 * shows the peer (null until mTLS proves one), the arrival port, method, path, headers and filter metadata.
 */
export interface FilteredRequest extends AuthzRequest {
  readonly grpc: boolean;
  /** The request headers, which a filter may edit before the router sees them (null once forwarded). */
  readonly requestHeaders: RequestHeaders | null;
  filterMetadata: FilterMetadata | null;
  /** The request ended (answered, or the client went away): an async filter must not touch it any more. */
  readonly ended: boolean;
  /** After onRequest returned false without answering or holding (an async check): run the next filters. */
  continueFilters(): void;
  /** Answers the request with `reason` (the router never sees it). */
  localReply(reason: Reason, detail?: string): void;
  /**
   * Holds the request for `ms`, then answers it with `then` if given, else runs the rest of the chain. The client
   * going away ends the hold early. `tracker` hears when the hold is over either way.
   */
  hold(ms: number, then: Reason | null, tracker: HoldTracker): void;
}

export interface HttpFilter {
  /** true: go on with the next filter; false: the filter answered or held the request. */
  onRequest(request: FilteredRequest, route: RouteModel): boolean;
}
