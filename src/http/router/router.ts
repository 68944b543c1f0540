// The router, Envoy's terminal HTTP filter: route → cluster → attempts. It builds the upstream request, picks an
// endpoint through the cluster's call seam, runs the route timeout (shortened by a gRPC caller's grpc-timeout), the
// per-try timeout and the retry policy (backoff, retry budget, the body held for a replay), and hands the response
// that is not retried to its owner, the exchange, which writes it to the client. One router per routed request;
// its timers and pool callbacks reach it without closures.
import type { Readable } from 'node:stream';
import { DEFAULTS, type RetryPolicyModel, type RouteModel } from '../../config/model.js';
import { REASONS, type Reason } from '../../reasons.js';
import { CLUSTER_OVERFLOW, type UpstreamCluster } from '../../upstream/cluster-manager.js';
import { httpOutcome, type CallOutcome } from '../../upstream/outlier.js';
import { IDEMPOTENT, PENDING_OVERFLOW, UPSTREAM_MALFORMED, UPSTREAM_UNSEEN, type UpstreamRequestSpec, type UpstreamSink, type UpstreamStream } from '../../upstream/pool.js';
import type { EndpointState } from '../../upstream/types.js';
import type { HttpContext, RequestHeaders } from '../context.js';
import { buildUpstreamHeaders, newHeaderMap, type HeaderMap } from '../headers.js';
import { grpcTimeoutMs } from './grpc-timeout.js';
import type { HopSpan } from '../tracing/span.js';
import type { OriginalDestination } from '../../listener/original-dst.js';
import { PEER_IDENTITY_ERROR, TLS_NOT_READY_ERROR } from '../../tls/handshake-failures.js';
import { cancelDeadline, startDeadline, type DeadlineList, type Expirable } from './deadlines.js';
import { ReplayableBody } from './replay-body.js';
import { backoffMs, retriableFailure, retriableResponse, retryForbidden, type AttemptFailure } from './retry-policy.js';

/** The request the router forwards, and where the response it settles on goes (the exchange). */
export interface RouterOwner {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly remoteAddress: string;
  /** The connection's original destination (transparent interception): the host of an ORIGINAL_DST cluster. */
  readonly originalDst: OriginalDestination | undefined;
  readonly grpc: boolean;
  requestId: string;
  /** This hop's span of the request's trace: its context goes on the upstream request. */
  readonly span: HopSpan | null;
  /** The response head the router settled on (it is not retried from here on). */
  onResponseHead(status: number, headers: HeaderMap, endStream: boolean): void;
  /** Response body bytes; false asks the router to pause the upstream until resume(). */
  onResponseData(chunk: Buffer): boolean;
  /** Whether nothing refers to the chunk last given to onResponseData any more (see UpstreamSink.dataReleased). */
  responseDataReleased(): boolean;
  onResponseEnd(trailers: HeaderMap | null): void;
  /** The router gives up (no endpoint, a failure not retried, a timeout): a local reply, or a cut response. */
  onRouterFailure(reason: Reason, detail?: string): void;
  /** Request body bytes going upstream (a replay's too: end() returns the count to keep then). */
  onRequestBodyBytes(bytes: number): void;
  /** Whether the client's whole request (its body's end) has arrived. */
  requestComplete(): boolean;
}

/**
 * One try of the request on one endpoint. The router's callbacks learn which try spoke, so a hedged request (a
 * second try started at the per-try timeout while the first stays in flight) can take whichever answers first.
 */
class Attempt implements UpstreamSink {
  upstream: UpstreamStream | null = null;
  tryTimer: NodeJS.Timeout | null = null;
  /** A hedged try past its per-try timeout: outlier detection counted the timeout already (not again at its end). */
  timeoutRecorded = false;
  /** Waiting in the pool's queue: not sent yet, so no per-try timeout runs and the endpoint is not to blame. */
  queued = false;
  /** endAttempt ran. */
  done = false;

  constructor(
    readonly router: Router,
    readonly endpoint: EndpointState,
    /** performance.now() when the try started. */
    readonly startedAt: number,
  ) {}

  onUpstreamHeaders(status: number, headers: HeaderMap, endStream: boolean): void {
    this.router.attemptHeaders(this, status, headers, endStream);
  }
  onUpstreamData(chunk: Buffer): boolean {
    return this.router.attemptData(chunk);
  }
  dataReleased(): boolean {
    return this.router.attemptDataReleased();
  }
  onUpstreamEnd(trailers: HeaderMap | null): void {
    this.router.attemptEnd(this, trailers);
  }
  onUpstreamError(err: Error, connectFailed: boolean): void {
    this.router.attemptError(this, err, connectFailed);
  }
  onRequestBodyBytes(bytes: number): void {
    this.router.attemptBodyBytes(bytes);
  }
  onUpstreamQueued(): void {
    this.queued = true;
  }
  onUpstreamDequeued(): void {
    this.queued = false;
    this.router.armTryTimer(this);
  }
}

export class Router implements Expirable {
  private cluster: UpstreamCluster | null = null;
  /** The endpoint of the latest try (a retry avoids it), or of the try whose response the client got. */
  private endpoint: EndpointState | null = null;
  private hash: number | undefined = undefined;
  private spec: UpstreamRequestSpec | null = null;
  /** The tries in flight: one, or more while a hedged request races its predecessor. */
  private live: Attempt[] = [];
  // The route timeout, across every attempt (see deadlines.ts: armed while on a list or with a timer of its own).
  deadlineAt = 0;
  deadlinePrev: Expirable | null = null;
  deadlineNext: Expirable | null = null;
  deadlineList: DeadlineList | null = null;
  deadlineTimer: NodeJS.Timeout | null = null;
  /** Attempts made so far (the access log's attempts). */
  attempts = 0;
  private retry: RetryPolicyModel | undefined = undefined;
  private hedge = false;
  private replayBody: ReplayableBody | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** The request holds one of the cluster's retry slots (tryStartRetry). */
  private holdsRetry = false;
  /** The one replay of a request the upstream never saw was made. */
  private unseenReplayed = false;
  /** A response head went to the owner: nothing is retried any more. */
  private responding = false;
  private ended = false;
  /** The route timeout waiting for the request's last byte (Envoy starts it there); 0 when none waits. */
  private pendingTimeoutMs = 0;

  constructor(
    private readonly ctx: HttpContext,
    private readonly owner: RouterOwner,
  ) {}

  /**
   * Forwards the request along `route` with the route timeout `timeoutMs` (timeoutMs(route, headers), which the
   * caller computed already for its stream idle timeout, also the caller's).
   */
  start(route: RouteModel, headers: RequestHeaders, body: Readable | null, scheme: string, timeoutMs: number): void {
    const ctx = this.ctx;
    const owner = this.owner;
    const action = route.action;
    const cluster = ctx.clusters.get(ctx.pickCluster(action));
    if (cluster === undefined) return owner.onRouterFailure(REASONS.noCluster);
    this.cluster = cluster;
    this.hash = action.hashPolicies.length === 0 ? undefined : ctx.requestHash(action.hashPolicies, headers, owner.authority, owner.remoteAddress);

    const upstreamHeaders = newHeaderMap();
    owner.requestId = buildUpstreamHeaders(
      headers,
      { remoteAddress: owner.remoteAddress, generateRequestId: ctx.chain.generateRequestId, keepTeTrailers: cluster.model.protocol === 'http2' },
      upstreamHeaders,
    );
    owner.span?.inject(upstreamHeaders);
    let path = owner.path;
    if (action.prefixRewrite !== undefined && route.match.kind === 'prefix') {
      path = action.prefixRewrite + path.slice(route.match.value.length);
    }
    const retry = action.retry;
    if (retry !== undefined && retry.numRetries > 0) {
      this.retry = retry;
      // Two tries in flight at once cannot share one body stream: a request with a body is retried, not hedged.
      this.hedge = action.hedgeOnPerTryTimeout && body === null;
    }
    // The body is held for a retry, and for an idempotent request whatever the policy: a reused keep-alive
    // connection the upstream closed as the request went out loses it, and it is sent again (UPSTREAM_UNSEEN).
    if (body !== null && (this.retry !== undefined || IDEMPOTENT.has(owner.method))) {
      this.replayBody = new ReplayableBody(body, retry?.bufferLimitBytes ?? DEFAULTS.retryBufferLimitBytes);
      body = this.replayBody.open();
    }
    this.spec = { method: owner.method, path, authority: action.hostRewrite ?? owner.authority, scheme, headers: upstreamHeaders, body };
    // One clock read for the route deadline and the first try's start (a read costs ~0.1-0.2 µs).
    const now = performance.now();
    // The route timeout runs from the request's last byte, as Envoy's: an upload longer than it is no timeout.
    if (timeoutMs > 0) {
      if (owner.requestComplete()) startDeadline(this, timeoutMs, now);
      else this.pendingTimeoutMs = timeoutMs;
    }
    this.startAttempt(now);
  }

  /**
   * The client's request has all arrived: the route timeout held back for it starts, and so do the per-try
   * timeouts of the tries in flight (neither counts a slow client against the endpoint).
   */
  onRequestComplete(): void {
    if (this.ended) return;
    const ms = this.pendingTimeoutMs;
    if (ms > 0) {
      this.pendingTimeoutMs = 0;
      startDeadline(this, ms, performance.now());
    }
    for (const attempt of this.live) this.armTryTimer(attempt);
  }

  /** The route timeout spans every attempt; a gRPC caller's own deadline shortens it (504 / DEADLINE_EXCEEDED). */
  timeoutMs(route: RouteModel, headers: RequestHeaders): number {
    const timeoutMs = route.action.timeoutMs;
    if (!this.owner.grpc) return timeoutMs;
    const deadline = grpcTimeoutMs(headers['grpc-timeout']);
    return deadline !== undefined && (timeoutMs === 0 || deadline < timeoutMs) ? deadline : timeoutMs;
  }

  /**
   * Sends the request to an endpoint of the cluster: the first try, a retry or a hedge (to another endpoint if it
   * can). `now`: performance.now(), when the caller has just read it.
   */
  startAttempt(now = performance.now()): void {
    this.retryTimer = null;
    if (this.ended) return;
    const cluster = this.cluster!;
    // ORIGINAL_DST (PassthroughCluster): the host is where the client's connection was going, taken only from the
    // connection (Envoy's x-envoy-original-dst-host header, use_http_header, is not read: any client could aim it).
    const endpoint = cluster.startRequestCall(this.hash, this.owner.originalDst, this.endpoint);
    if (endpoint === null || endpoint === CLUSTER_OVERFLOW) {
      // A hedge that finds no endpoint leaves the try already in flight to answer.
      if (this.live.length > 0) return;
      return this.owner.onRouterFailure(endpoint === null ? REASONS.noHealthyUpstream : REASONS.overflow);
    }
    this.endpoint = endpoint;
    this.attempts++;
    cluster.stats.requestStarted();
    const attempt = new Attempt(this, endpoint, now);
    // The first try gets an array of one: a push onto the empty one grows it to 17 slots (~76 B a request).
    if (this.live.length === 0) this.live = [attempt];
    else this.live.push(attempt);
    attempt.upstream = cluster.pool(endpoint).request(this.spec!, attempt);
    this.armTryTimer(attempt);
  }

  /**
   * Starts the try's per-try timeout when it is due: once the try has left the pool's queue and the client's body
   * has all arrived, as Envoy arms it (when the pool is ready and the request complete). Neither a client still
   * sending nor a wait for a busy pool's connection is the endpoint being slow: counted, they were cut, retried
   * into the same saturated pool and charged to a healthy endpoint by outlier detection.
   */
  armTryTimer(attempt: Attempt): void {
    const perTryMs = this.retry?.perTryTimeoutMs ?? 0;
    if (perTryMs === 0 || attempt.tryTimer !== null || attempt.done || attempt.queued || attempt.timeoutRecorded) return;
    if (this.ended || this.responding || !this.owner.requestComplete()) return;
    attempt.tryTimer = setTimeout(onTryTimeout, perTryMs, attempt);
  }

  /**
   * Ends a try: its call on the endpoint (outlier detection sees `outcome`) and its stats; cancels it if asked.
   * `now`: performance.now(), when the caller has just read it.
   */
  private endAttempt(attempt: Attempt, outcome: CallOutcome, status: number, cancel: boolean, now = performance.now()): void {
    const i = this.live.indexOf(attempt);
    if (i < 0) return;
    // The one try of a request is the last: pop() allocates nothing (splice() returns an array of what it removed).
    if (i === this.live.length - 1) this.live.pop();
    else this.live.splice(i, 1);
    if (attempt.tryTimer !== null) {
      clearTimeout(attempt.tryTimer);
      attempt.tryTimer = null;
    }
    attempt.done = true;
    const upstream = attempt.upstream;
    attempt.upstream = null;
    if (cancel && upstream !== null) upstream.abort();
    const cluster = this.cluster!;
    // A timeout counted at the per-try timeout is not counted again when the route timeout ends the try; a try
    // still in the pool's queue never reached the endpoint.
    const counted = attempt.queued || (attempt.timeoutRecorded && outcome === 'localFailure') ? 'ignored' : outcome;
    cluster.endCall(attempt.endpoint, true, counted);
    cluster.stats.requestFinished(attempt.endpoint.key, status, (now - attempt.startedAt) / 1000);
  }

  /**
   * A try failed in a way the retry policy names. While another try is in flight (a hedge) this one just ends: the
   * other may still answer. Else tries again (after a backoff) if attempts, the cluster's retry budget and the
   * request body allow. On true the failed try is over; on false nothing changed and the caller passes the
   * failure on.
   */
  private retryAfter(attempt: Attempt, outcome: CallOutcome, status: number): boolean {
    if (this.live.length > 1) {
      this.endAttempt(attempt, outcome, status, true);
      return true;
    }
    if (!this.mayRetry()) return false;
    this.replayBody?.detach();
    this.endAttempt(attempt, outcome, status, true);
    if (this.replayBody !== null) this.spec!.body = this.replayBody.open();
    this.retryTimer = setTimeout(onRetryTimer, backoffMs(this.retry!, this.attempts, this.ctx.random), this);
    return true;
  }

  /** Whether one more try is allowed (attempts left, the body held, a retry slot); counts the answer. */
  private mayRetry(): boolean {
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
    // One slot per request, held from its first retry until its response starts or it ends.
    if (!this.holdsRetry) {
      if (!cluster.tryStartRetry()) {
        cluster.stats.retrySkipped('budget');
        return false;
      }
      this.holdsRetry = true;
    }
    cluster.stats.retried();
    return true;
  }

  // --- what the tries report ---

  attemptHeaders(attempt: Attempt, status: number, headers: HeaderMap, endStream: boolean): void {
    if (this.ended) return;
    const retry = this.retry;
    if (retry !== undefined) {
      // A gRPC status in the response head is a trailers-only response: the call ended before any message.
      const grpcStatus = this.owner.grpc && endStream ? headers['grpc-status'] : undefined;
      if (
        retriableResponse(retry, status, typeof grpcStatus === 'string' ? grpcStatus : undefined) &&
        !retryForbidden(headers) &&
        this.retryAfter(attempt, httpOutcome(status, false), status)
      ) {
        return;
      }
      // The response is the client's from here on; its own per-try deadline no longer applies (the route's does).
      if (attempt.tryTimer !== null) {
        clearTimeout(attempt.tryTimer);
        attempt.tryTimer = null;
      }
      // The first try to answer wins; the others are cancelled.
      for (let i = this.live.length - 1; i >= 0; i--) {
        const other = this.live[i]!;
        if (other !== attempt) this.endAttempt(other, 'ignored', 0, true);
      }
    }
    this.endpoint = attempt.endpoint;
    this.responding = true;
    // The retry is over once its answer goes to the client: its slot goes back now, as Envoy drops its retry state
    // at the response head, not when a long (streamed) response ends, which would starve the cluster's retries.
    if (this.holdsRetry) {
      this.holdsRetry = false;
      this.cluster!.retryEnded();
    }
    this.owner.onResponseHead(status, headers, endStream);
  }

  attemptData(chunk: Buffer): boolean {
    return this.ended || this.owner.onResponseData(chunk);
  }

  attemptDataReleased(): boolean {
    return this.owner.responseDataReleased();
  }

  attemptEnd(attempt: Attempt, trailers: HeaderMap | null): void {
    if (this.ended) return;
    attempt.upstream = null;
    this.owner.onResponseEnd(trailers);
  }

  attemptBodyBytes(bytes: number): void {
    // Counted again when a body is replayed: end() gives the owner the replay buffer's count, which is the client's.
    this.owner.onRequestBodyBytes(bytes);
  }

  attemptError(attempt: Attempt, err: Error, connectFailed: boolean): void {
    if (this.ended) return;
    attempt.upstream = null;
    if (connectFailed) this.cluster!.stats.connectFailure();
    const code = (err as NodeJS.ErrnoException).code;
    if (code === UPSTREAM_UNSEEN && this.replayUnseen(attempt)) return;
    // mTLS policy: the upstream is not who the destination may be, or our secrets are not there. Not retried.
    if (code === PEER_IDENTITY_ERROR || code === TLS_NOT_READY_ERROR) {
      this.owner.onRouterFailure(code === PEER_IDENTITY_ERROR ? REASONS.peerIdentity : REASONS.tlsNotReady, err.message);
      return;
    }
    const retry = this.retry;
    if (retry !== undefined && !this.responding && code !== PENDING_OVERFLOW) {
      const failure: AttemptFailure = connectFailed ? 'connect' : err.message.includes('REFUSED_STREAM') ? 'refused' : 'reset';
      const status = connectFailed ? REASONS.connectFailure.httpStatus : REASONS.upstreamReset.httpStatus;
      if (retriableFailure(retry, failure) && this.retryAfter(attempt, 'localFailure', status)) return;
    }
    const reason = connectFailed
      ? REASONS.connectFailure
      : code === undefined
        ? REASONS.upstreamReset
        : code.startsWith('HPE_') || code === UPSTREAM_MALFORMED
          ? REASONS.upstreamProtocolError
          : code === PENDING_OVERFLOW
            ? REASONS.overflow
            : REASONS.upstreamReset;
    this.owner.onRouterFailure(reason, err.message);
  }

  /**
   * An idempotent request the upstream never saw (the keep-alive race) is sent again at once, once, whatever the
   * retry policy says, if its body was held whole. Not a retry: no backoff, no retry slot.
   */
  private replayUnseen(attempt: Attempt): boolean {
    const replayBody = this.replayBody;
    if (this.unseenReplayed || this.responding || this.live.length > 1 || replayBody === null || !replayBody.replayable) return false;
    this.unseenReplayed = true;
    replayBody.detach();
    // Not the endpoint's failure (outlier detection ignores it), but an attempt that ended without a response.
    this.endAttempt(attempt, 'ignored', REASONS.upstreamReset.httpStatus, false);
    this.spec!.body = replayBody.open();
    this.startAttempt();
    return true;
  }

  // --- timeouts ---

  /** Expirable: the route timeout passed. */
  onDeadline(): void {
    if (this.ended) return;
    this.abort();
    this.owner.onRouterFailure(REASONS.upstreamTimeout);
  }

  /**
   * A try passed the retry policy's per-try timeout: Envoy's UT, retried as a 504 would be. With hedging the try
   * stays in flight and another starts beside it (Envoy's hedge_on_per_try_timeout); whichever answers first wins.
   */
  onTryTimeout(attempt: Attempt): void {
    attempt.tryTimer = null;
    if (this.ended || this.responding) return;
    if (retriableFailure(this.retry!, 'perTryTimeout')) {
      if (this.hedge) {
        // The try stays in flight, but its endpoint was too slow: outlier detection counts the timeout now, as
        // Envoy does (else a hung endpoint that always loses to the hedge is never ejected).
        attempt.timeoutRecorded = true;
        this.cluster!.recordOutcome(attempt.endpoint, 'localFailure');
        if (this.mayRetry()) this.startAttempt();
        return;
      }
      if (this.retryAfter(attempt, 'localFailure', REASONS.upstreamTimeout.httpStatus)) return;
    }
    this.abort();
    this.owner.onRouterFailure(REASONS.upstreamTimeout, 'per-try timeout');
  }

  // --- steering from the exchange ---

  /** The client is ready for more of the response. */
  resume(): void {
    for (const attempt of this.live) attempt.upstream?.resume();
  }

  /**
   * Cancels every try in flight upstream (the client went away, a timeout); no callback follows. keepConnection:
   * the client went away (not a timeout), so an HTTP/1.1 upstream connection may be kept (UpstreamStream.abort).
   */
  abort(keepConnection = false): void {
    for (const attempt of this.live) {
      const upstream = attempt.upstream;
      attempt.upstream = null;
      if (upstream !== null) upstream.abort(keepConnection);
    }
  }

  /**
   * The request is over: ends the tries in flight (the one that answered with `outcome`), stops every timer and
   * gives back the retry slot and the held body. Returns the request body bytes the client sent when the replay
   * buffer counted them, else -1. `now`: performance.now(), read by the caller for its own duration too.
   */
  end(outcome: CallOutcome, status: number, now: number): number {
    if (this.ended) return -1;
    this.ended = true;
    // A no-op when none is armed (no timeout, or it fired).
    cancelDeadline(this);
    for (let i = this.live.length - 1; i >= 0; i--) {
      const attempt = this.live[i]!;
      // A try the exchange's end cut short (a timeout, the client leaving) was aborted already: end its call too.
      this.endAttempt(attempt, attempt.endpoint === this.endpoint ? outcome : 'ignored', status, true, now);
    }
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

function onTryTimeout(attempt: Attempt): void {
  attempt.router.onTryTimeout(attempt);
}

function onRetryTimer(router: Router): void {
  router.startAttempt();
}
