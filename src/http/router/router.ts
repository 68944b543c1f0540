// The router, Envoy's terminal HTTP filter: route → cluster → attempts. It builds the upstream request, picks an
// endpoint through the cluster's call seam, runs the route timeout (shortened by a gRPC caller's grpc-timeout), the
// per-try timeout and the retry policy (backoff, retry budget, the body held for a replay), and hands the response
// that is not retried to its owner, the exchange, which writes it to the client. One router per routed request;
// its timers and pool callbacks reach it without closures.
import type { Readable } from 'node:stream';
import type { RetryPolicyModel, RouteModel } from '../../config/model.js';
import { REASONS, type Reason } from '../../reasons.js';
import { CLUSTER_OVERFLOW, type UpstreamCluster } from '../../upstream/cluster-manager.js';
import { httpOutcome, type CallOutcome } from '../../upstream/outlier.js';
import { PENDING_OVERFLOW, type UpstreamRequestSpec, type UpstreamSink, type UpstreamStream } from '../../upstream/pool.js';
import type { EndpointState } from '../../upstream/types.js';
import type { HttpContext, RequestHeaders } from '../context.js';
import { buildUpstreamHeaders, newHeaderMap, type HeaderMap } from '../headers.js';
import { grpcTimeoutMs } from './grpc-timeout.js';
import { PEER_IDENTITY_ERROR, TLS_NOT_READY_ERROR } from '../../tls/handshake-failures.js';
import { ReplayableBody } from './replay-body.js';
import { backoffMs, retriableFailure, retriableResponse, type AttemptFailure } from './retry-policy.js';

/** The request the router forwards, and where the response it settles on goes (the exchange). */
export interface RouterOwner {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly remoteAddress: string;
  readonly grpc: boolean;
  requestId: string;
  /** The response head the router settled on (it is not retried from here on). */
  onResponseHead(status: number, headers: HeaderMap, endStream: boolean): void;
  /** Response body bytes; false asks the router to pause the upstream until resume(). */
  onResponseData(chunk: Buffer): boolean;
  onResponseEnd(trailers: HeaderMap | null): void;
  /** The router gives up (no endpoint, a failure not retried, a timeout): a local reply, or a cut response. */
  onRouterFailure(reason: Reason, detail?: string): void;
  /** Request body bytes going upstream (a replay's too: end() returns the count to keep then). */
  onRequestBodyBytes(bytes: number): void;
}

export class Router implements UpstreamSink {
  private cluster: UpstreamCluster | null = null;
  /** The endpoint of the latest attempt (a retry avoids it). */
  private endpoint: EndpointState | null = null;
  private hash: number | undefined = undefined;
  private spec: UpstreamRequestSpec | null = null;
  private upstream: UpstreamStream | null = null;
  /** The route timeout, across every attempt. */
  private timer: NodeJS.Timeout | null = null;
  /** An attempt holds a call on `endpoint` (ended exactly once, by endAttempt). */
  private attemptOpen = false;
  /** Attempts made so far (the access log's attempts). */
  attempts = 0;
  private retry: RetryPolicyModel | undefined = undefined;
  private replayBody: ReplayableBody | null = null;
  private tryTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** The request holds one of the cluster's retry slots (tryStartRetry). */
  private holdsRetry = false;
  /** A response head went to the owner: nothing is retried any more. */
  private responding = false;
  private ended = false;

  constructor(
    private readonly ctx: HttpContext,
    private readonly owner: RouterOwner,
  ) {}

  /** Forwards the request along `route`; the stream idle timeout, if the exchange needs one, is the caller's. */
  start(route: RouteModel, headers: RequestHeaders, body: Readable | null, scheme: string): void {
    const ctx = this.ctx;
    const owner = this.owner;
    const action = route.action;
    const cluster = ctx.clusters.get(ctx.pickCluster(action));
    if (cluster === undefined) return owner.onRouterFailure(REASONS.noCluster);
    this.cluster = cluster;
    this.hash = action.hashPolicies.length === 0 ? undefined : ctx.requestHash(action.hashPolicies, headers, owner.remoteAddress);

    const upstreamHeaders = newHeaderMap();
    owner.requestId = buildUpstreamHeaders(
      headers,
      { remoteAddress: owner.remoteAddress, generateRequestId: ctx.chain.generateRequestId, keepTeTrailers: cluster.model.protocol === 'http2' },
      upstreamHeaders,
    );
    let path = owner.path;
    if (action.prefixRewrite !== undefined && route.match.kind === 'prefix') {
      path = action.prefixRewrite + path.slice(route.match.value.length);
    }
    const retry = action.retry;
    if (retry !== undefined && retry.numRetries > 0) {
      this.retry = retry;
      if (body !== null) {
        this.replayBody = new ReplayableBody(body, retry.bufferLimitBytes);
        body = this.replayBody.open();
      }
    }
    this.spec = { method: owner.method, path, authority: action.hostRewrite ?? owner.authority, scheme, headers: upstreamHeaders, body };
    const timeoutMs = this.timeoutMs(route, headers);
    if (timeoutMs > 0) this.timer = setTimeout(onRouteTimeout, timeoutMs, this);
    this.startAttempt();
  }

  /** The route timeout spans every attempt; a gRPC caller's own deadline shortens it (504 / DEADLINE_EXCEEDED). */
  timeoutMs(route: RouteModel, headers: RequestHeaders): number {
    const timeoutMs = route.action.timeoutMs;
    if (!this.owner.grpc) return timeoutMs;
    const deadline = grpcTimeoutMs(headers['grpc-timeout']);
    return deadline !== undefined && (timeoutMs === 0 || deadline < timeoutMs) ? deadline : timeoutMs;
  }

  /** Sends the request to an endpoint of the cluster: the first attempt, or a retry (to another endpoint if it can). */
  startAttempt(): void {
    this.retryTimer = null;
    if (this.ended) return;
    const cluster = this.cluster!;
    const endpoint = cluster.startCall(this.hash, true, this.endpoint);
    if (endpoint === null) return this.owner.onRouterFailure(REASONS.noHealthyUpstream);
    if (endpoint === CLUSTER_OVERFLOW) return this.owner.onRouterFailure(REASONS.overflow);
    this.endpoint = endpoint;
    this.attemptOpen = true;
    this.attempts++;
    cluster.stats.requestStarted();
    const perTryMs = this.retry?.perTryTimeoutMs ?? 0;
    if (perTryMs > 0) this.tryTimer = setTimeout(onTryTimeout, perTryMs, this);
    this.upstream = cluster.pool(endpoint).request(this.spec!, this);
  }

  /** Ends the attempt in flight: its call on the endpoint (outlier detection sees `outcome`) and its stats. */
  private endAttempt(outcome: CallOutcome, status: number): void {
    if (!this.attemptOpen) return;
    this.attemptOpen = false;
    this.clearTryTimer();
    const cluster = this.cluster!;
    const endpoint = this.endpoint!;
    cluster.endCall(endpoint, true, outcome);
    cluster.stats.requestFinished(endpoint.key, status);
  }

  /**
   * The attempt failed in a way the retry policy names: tries again (after a backoff) if attempts, the cluster's
   * retry budget and the request body allow. On true the failed attempt is over and a retry is on its way; on
   * false nothing changed and the caller passes the failure on.
   */
  private retryAfter(outcome: CallOutcome, status: number): boolean {
    const policy = this.retry!;
    const cluster = this.cluster!;
    if (this.attempts > policy.numRetries) {
      cluster.stats.retrySkipped('attempts');
      return false;
    }
    const replayBody = this.replayBody;
    if (replayBody !== null && !replayBody.replayable) {
      cluster.stats.retrySkipped('body');
      return false;
    }
    // One slot per request, held from its first retry until it ends.
    if (!this.holdsRetry) {
      if (!cluster.tryStartRetry()) {
        cluster.stats.retrySkipped('budget');
        return false;
      }
      this.holdsRetry = true;
    }
    cluster.stats.retried();
    this.abort();
    replayBody?.detach();
    this.endAttempt(outcome, status);
    if (replayBody !== null) this.spec!.body = replayBody.open();
    this.retryTimer = setTimeout(onRetryTimer, backoffMs(policy, this.attempts, this.ctx.random), this);
    return true;
  }

  // --- UpstreamSink ---

  onUpstreamHeaders(status: number, headers: HeaderMap, endStream: boolean): void {
    if (this.ended) return;
    const retry = this.retry;
    if (retry !== undefined) {
      // A gRPC status in the response head is a trailers-only response: the call ended before any message.
      const grpcStatus = this.owner.grpc && endStream ? headers['grpc-status'] : undefined;
      if (retriableResponse(retry, status, typeof grpcStatus === 'string' ? grpcStatus : undefined) && this.retryAfter(httpOutcome(status, false), status)) {
        return;
      }
      // The response is the client's from here on; its own per-try deadline no longer applies (the route's does).
      this.clearTryTimer();
    }
    this.responding = true;
    this.owner.onResponseHead(status, headers, endStream);
  }

  onUpstreamData(chunk: Buffer): boolean {
    return this.ended || this.owner.onResponseData(chunk);
  }

  onUpstreamEnd(trailers: HeaderMap | null): void {
    if (this.ended) return;
    this.upstream = null;
    this.owner.onResponseEnd(trailers);
  }

  onRequestBodyBytes(bytes: number): void {
    // Counted again when a body is replayed: end() gives the owner the replay buffer's count, which is the client's.
    this.owner.onRequestBodyBytes(bytes);
  }

  onUpstreamError(err: Error, connectFailed: boolean): void {
    if (this.ended) return;
    this.upstream = null;
    if (connectFailed) this.cluster?.stats.connectFailure();
    const code = (err as NodeJS.ErrnoException).code;
    // mTLS policy: the upstream is not who the destination may be, or our secrets are not there. Not retried.
    if (code === PEER_IDENTITY_ERROR || code === TLS_NOT_READY_ERROR) {
      this.owner.onRouterFailure(code === PEER_IDENTITY_ERROR ? REASONS.peerIdentity : REASONS.tlsNotReady, err.message);
      return;
    }
    const retry = this.retry;
    if (retry !== undefined && !this.responding && code !== PENDING_OVERFLOW) {
      const failure: AttemptFailure = connectFailed ? 'connect' : err.message.includes('REFUSED_STREAM') ? 'refused' : 'reset';
      if (retriableFailure(retry, failure) && this.retryAfter('localFailure', connectFailed ? REASONS.connectFailure.httpStatus : REASONS.upstreamReset.httpStatus)) {
        return;
      }
    }
    const reason = connectFailed
      ? REASONS.connectFailure
      : code === undefined
        ? REASONS.upstreamReset
        : code.startsWith('HPE_')
          ? REASONS.upstreamProtocolError
          : code === PENDING_OVERFLOW
            ? REASONS.overflow
            : REASONS.upstreamReset;
    this.owner.onRouterFailure(reason, err.message);
  }

  // --- timeouts ---

  onRouteTimeout(): void {
    this.timer = null;
    if (this.ended) return;
    this.abort();
    this.owner.onRouterFailure(REASONS.upstreamTimeout);
  }

  /** The attempt in flight passed the retry policy's per-try timeout: Envoy's UT, retried as a 504 would be. */
  onTryTimeout(): void {
    this.tryTimer = null;
    if (this.ended || this.responding) return;
    if (retriableFailure(this.retry!, 'perTryTimeout') && this.retryAfter('localFailure', REASONS.upstreamTimeout.httpStatus)) return;
    this.abort();
    this.owner.onRouterFailure(REASONS.upstreamTimeout, 'per-try timeout');
  }

  private clearTryTimer(): void {
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
      this.tryTimer = null;
    }
  }

  // --- steering from the exchange ---

  /** The client is ready for more of the response. */
  resume(): void {
    this.upstream?.resume();
  }

  /** Cancels the attempt in flight upstream (the client went away, a timeout, a retry); no callback follows. */
  abort(): void {
    const upstream = this.upstream;
    this.upstream = null;
    if (upstream !== null) upstream.abort();
  }

  /**
   * The request is over: ends the attempt in flight with `outcome`, stops every timer and gives back the retry slot
   * and the held body. Returns the request body bytes the client sent when the replay buffer counted them, else -1.
   */
  end(outcome: CallOutcome, status: number): number {
    if (this.ended) return -1;
    this.ended = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.endAttempt(outcome, status);
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.holdsRetry) this.cluster!.retryEnded();
    const replayBody = this.replayBody;
    if (replayBody === null) return -1;
    replayBody.release();
    return replayBody.received;
  }

  // --- access log fields ---
  get clusterName(): string {
    return this.cluster?.model.name ?? '-';
  }
  get endpointKey(): string {
    return this.endpoint?.key ?? '-';
  }
}

function onRouteTimeout(router: Router): void {
  router.onRouteTimeout();
}

function onTryTimeout(router: Router): void {
  router.onTryTimeout();
}

function onRetryTimer(router: Router): void {
  router.startAttempt();
}
