// One HTTP request through the proxy: route it, pick an endpoint, forward it on the cluster's pool and stream
// the response back, on either downstream codec. The exchange is the handler object of the request: socket
// and stream events reach it through shared functions and a symbol, so a request allocates no closures.
import * as http2 from 'node:http2';
import type { Readable } from 'node:stream';
import type { RetryPolicyModel, RouteModel } from '../config/model.js';
import { CLUSTER_OVERFLOW, type UpstreamCluster } from '../upstream/cluster-manager.js';
import type { EndpointState } from '../upstream/types.js';
import { httpOutcome, type CallOutcome } from '../upstream/outlier.js';
import { PENDING_OVERFLOW, type UpstreamSink, type UpstreamStream, type UpstreamRequestSpec } from '../upstream/pool.js';
import { REASONS, type Reason } from '../reasons.js';
import type { FilteredRequest, HoldTracker, HttpFilter } from './filters/filter.js';
import { buildUpstreamHeaders, newHeaderMap, type HeaderMap } from './headers.js';
import type { HttpContext, RequestHeaders } from './context.js';
import type { H1Connection, H1Request } from './h1-connection.js';
import { H2Downstream, NOT_SENT, type Downstream, type H2Owner } from './downstream.js';
import { grpcTimeoutMs } from './grpc-timeout.js';
import { ReplayableBody } from './replay-body.js';
import { backoffMs, retriableFailure, retriableResponse, type AttemptFailure } from './retry-policy.js';

const PROTOCOL_H11 = 'HTTP/1.1';
const PROTOCOL_H10 = 'HTTP/1.0';
const PROTOCOL_H2 = 'HTTP/2';

export class HttpExchange implements UpstreamSink, H2Owner, FilteredRequest {
  /** Where the response goes: the HTTP/1 connection, or the HTTP/2 stream's adapter. */
  private downstream: Downstream | null = null;
  protocol: 'HTTP/1.1' | 'HTTP/1.0' | 'HTTP/2' = PROTOCOL_H11;

  readonly startMs = Date.now();
  private readonly startNs = process.hrtime.bigint();
  method = '';
  authority = '';
  path = '';
  requestId = '';
  remoteAddress = '';
  grpc = false;

  private matched: RouteModel | null = null;
  // The request head and body, held from routing until the router takes them (filters may hold the request).
  private requestHeaders: RequestHeaders | null = null;
  private requestBody: Readable | null = null;
  private scheme = 'http';
  private filters: readonly HttpFilter[] | null = null;
  private filterIndex = 0;
  private holdTimer: NodeJS.Timeout | null = null;
  private holdThen: Reason | null = null;
  private holdTracker: HoldTracker | null = null;
  private cluster: UpstreamCluster | null = null;
  /** The endpoint of the latest attempt (a retry avoids it). */
  private endpoint: EndpointState | null = null;
  private hash: number | undefined = undefined;
  private spec: UpstreamRequestSpec | null = null;
  private upstream: UpstreamStream | null = null;
  /** The route timeout, across every attempt. */
  private timer: NodeJS.Timeout | null = null;
  /** The stream idle timeout: armed once, re-armed lazily for what is left after the latest activity. */
  private idleTimer: NodeJS.Timeout | null = null;
  private idleMs = 0;
  private lastActivityMs = 0;
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

  status = 0;
  bytesReceived = 0;
  bytesSent = 0;
  reason: Reason | null = null;
  private headersSent = false;
  private finished = false;

  constructor(private readonly ctx: HttpContext) {
    ctx.stats.requestStarted(ctx.direction);
  }

  get direction(): string {
    return this.ctx.direction;
  }

  // --- downstream entry points ---

  startH1(connection: H1Connection, req: H1Request): void {
    this.downstream = connection;
    this.protocol = req.http11 ? PROTOCOL_H11 : PROTOCOL_H10;
    this.method = req.method;
    let url = req.url;
    const host = req.headers.host;
    let authority = typeof host === 'string' ? host : '';
    // Absolute-form (a client configured with HTTP_PROXY): its authority wins over Host (RFC 9112 §3.2.2).
    if (url.charCodeAt(0) !== 47 /* '/' */ && url !== '*') {
      const schemeEnd = url.indexOf('://');
      if (schemeEnd > 0) {
        const pathStart = url.indexOf('/', schemeEnd + 3);
        authority = pathStart < 0 ? url.slice(schemeEnd + 3) : url.slice(schemeEnd + 3, pathStart);
        url = pathStart < 0 ? '/' : url.slice(pathStart);
      }
    }
    this.authority = authority;
    this.path = url;
    this.remoteAddress = connection.remoteAddress;
    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host (and not in absolute form) is a 400.
    if (authority === '' && req.http11) return this.localReply(REASONS.badRequest, 'an HTTP/1.1 request needs one Host header');
    this.route(req.headers, req.body, 'http');
  }

  startH2(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number): void {
    this.protocol = PROTOCOL_H2;
    const contentType = headers['content-type'];
    this.grpc = contentType !== undefined && contentType.startsWith('application/grpc');
    this.downstream = new H2Downstream(stream, this, this.grpc);
    this.method = (headers[':method'] as string | undefined) ?? 'GET';
    this.path = (headers[':path'] as string | undefined) ?? '/';
    this.authority = (headers[':authority'] as string | undefined) ?? headers.host ?? '';
    this.remoteAddress = stream.session?.socket?.remoteAddress ?? '';
    const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    this.route(headers, endStream ? null : stream, (headers[':scheme'] as string | undefined) ?? 'http');
  }

  // --- routing and forwarding ---

  private route(headers: RequestHeaders, body: Readable | null, scheme: string): void {
    const ctx = this.ctx;
    if (ctx.overload.active) return this.localReply(REASONS.overload);
    const routes = ctx.routeTable();
    const route: RouteModel | null = routes === null ? null : routes.match(this.authority, this.method, this.path, headers);
    if (route === null) return this.localReply(REASONS.noRoute);
    this.matched = route;
    this.requestHeaders = headers;
    this.requestBody = body;
    this.scheme = scheme;
    const filters = ctx.filters();
    if (filters.length === 0) return this.forward();
    this.filters = filters;
    this.runFilters();
  }

  /** Runs the chain's filters from where it stands; the router (forward) follows the last. */
  private runFilters(): void {
    const filters = this.filters!;
    const route = this.matched!;
    while (this.filterIndex < filters.length) {
      if (!filters[this.filterIndex++]!.onRequest(this, route)) return;
    }
    this.forward();
  }

  /** FilteredRequest.hold: a filter holds the request (a fault delay). */
  hold(ms: number, then: Reason | null, tracker: HoldTracker): void {
    this.holdThen = then;
    this.holdTracker = tracker;
    this.holdTimer = setTimeout(onHoldEnd, ms, this);
  }

  endHold(): void {
    this.holdTimer = null;
    this.holdTracker!.holdEnded();
    this.holdTracker = null;
    if (this.finished) return;
    const then = this.holdThen;
    if (then !== null) return this.localReply(then);
    this.runFilters();
  }

  /** The router: route → cluster → attempts. */
  private forward(): void {
    const ctx = this.ctx;
    const route = this.matched!;
    const headers = this.requestHeaders!;
    let body = this.requestBody;
    const scheme = this.scheme;
    this.requestHeaders = null;
    this.requestBody = null;
    const action = route.action;
    const clusterName = ctx.pickCluster(action);
    const cluster = ctx.clusters.get(clusterName);
    if (cluster === undefined) return this.localReply(REASONS.noCluster);
    this.cluster = cluster;
    this.hash = action.hashPolicies.length === 0 ? undefined : ctx.requestHash(action.hashPolicies, headers, this.remoteAddress);

    const upstreamHeaders = newHeaderMap();
    this.requestId = buildUpstreamHeaders(
      headers,
      { remoteAddress: this.remoteAddress, generateRequestId: ctx.chain.generateRequestId, keepTeTrailers: cluster.model.protocol === 'http2' },
      upstreamHeaders,
    );
    let path = this.path;
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
    this.spec = {
      method: this.method,
      path,
      authority: action.hostRewrite ?? this.authority,
      scheme,
      headers: upstreamHeaders,
      body,
    };
    // The route timeout spans every attempt; a gRPC caller's own deadline shortens it (504 / DEADLINE_EXCEEDED).
    let timeoutMs = action.timeoutMs;
    if (this.grpc) {
      const deadline = grpcTimeoutMs(headers['grpc-timeout']);
      if (deadline !== undefined && (timeoutMs === 0 || deadline < timeoutMs)) timeoutMs = deadline;
    }
    if (timeoutMs > 0) this.timer = setTimeout(onExchangeTimeout, timeoutMs, this);
    // The stream idle timeout (the route's idle_timeout, else the HCM's stream_idle_timeout) needs its own timer only
    // when the route timeout would not end the stream first: long streams, gRPC streams without a deadline.
    const idleMs = action.idleTimeoutMs > 0 ? action.idleTimeoutMs : ctx.chain.streamIdleTimeoutMs;
    if (idleMs > 0 && (timeoutMs === 0 || idleMs < timeoutMs)) {
      this.idleMs = idleMs;
      this.lastActivityMs = Date.now();
      this.idleTimer = setTimeout(onIdleCheck, idleMs, this);
    }
    this.startAttempt();
  }

  /** Sends the request to an endpoint of the cluster: the first attempt, or a retry (to another endpoint if it can). */
  startAttempt(): void {
    this.retryTimer = null;
    if (this.finished) return;
    const cluster = this.cluster!;
    const endpoint = cluster.startCall(this.hash, true, this.endpoint);
    if (endpoint === null) return this.localReply(REASONS.noHealthyUpstream);
    if (endpoint === CLUSTER_OVERFLOW) return this.localReply(REASONS.overflow);
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
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
      this.tryTimer = null;
    }
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
    const upstream = this.upstream;
    this.upstream = null;
    if (upstream !== null) upstream.abort();
    replayBody?.detach();
    this.endAttempt(outcome, status);
    if (replayBody !== null) this.spec!.body = replayBody.open();
    this.retryTimer = setTimeout(onRetryTimer, backoffMs(policy, this.attempts, this.ctx.random), this);
    return true;
  }

  // --- UpstreamSink ---

  onUpstreamHeaders(status: number, headers: HeaderMap, endStream: boolean): void {
    if (this.finished) return;
    const retry = this.retry;
    if (retry !== undefined) {
      // A gRPC status in the response head is a trailers-only response: the call ended before any message.
      const grpcStatus = this.grpc && endStream ? headers['grpc-status'] : undefined;
      if (retriableResponse(retry, status, typeof grpcStatus === 'string' ? grpcStatus : undefined) && this.retryAfter(httpOutcome(status, false), status)) {
        return;
      }
      // The response is the client's from here on; its own per-try deadline no longer applies (the route's does).
      if (this.tryTimer !== null) {
        clearTimeout(this.tryTimer);
        this.tryTimer = null;
      }
    }
    if (this.idleTimer !== null) this.lastActivityMs = Date.now();
    this.status = status;
    this.headersSent = true;
    // Both parsers (llhttp, nghttp2) reject control characters in what they hand us, so the head is safe.
    this.downstream!.respond(status, headers, endStream);
  }

  onUpstreamData(chunk: Buffer): boolean {
    if (this.finished) return true;
    if (this.idleTimer !== null) this.lastActivityMs = Date.now();
    this.bytesSent += chunk.length;
    // On false, the downstream's drain calls resumeUpstream().
    return this.downstream!.write(chunk);
  }

  onUpstreamEnd(trailers: HeaderMap | null): void {
    if (this.finished) return;
    this.upstream = null;
    this.downstream!.end(trailers);
    this.finish();
  }

  onRequestBodyBytes(bytes: number): void {
    if (this.idleTimer !== null) this.lastActivityMs = Date.now();
    // A body sent again is counted once, by the replay buffer.
    if (this.replayBody === null) this.bytesReceived += bytes;
  }

  onUpstreamError(err: Error, connectFailed: boolean): void {
    if (this.finished) return;
    this.upstream = null;
    if (connectFailed) this.cluster?.stats.connectFailure();
    const code = (err as NodeJS.ErrnoException).code;
    const retry = this.retry;
    if (retry !== undefined && !this.headersSent && code !== PENDING_OVERFLOW) {
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
    if (!this.headersSent) {
      this.localReply(reason, err.message);
      return;
    }
    // Mid-response: the client must see the failure, not a truncated success.
    this.reason = reason;
    this.resetDownstream();
    this.finish();
  }

  // --- timeouts, aborts and drains ---

  onTimeout(): void {
    this.timer = null;
    if (this.finished) return;
    this.abortUpstream();
    if (!this.headersSent) {
      this.localReply(REASONS.upstreamTimeout);
      return;
    }
    this.reason = REASONS.upstreamTimeout;
    this.resetDownstream();
    this.finish();
  }

  /** The stream idle timer fired: the stream ends if nothing moved for the whole idle time, else the timer waits on. */
  onIdleCheck(): void {
    this.idleTimer = null;
    if (this.finished) return;
    const idle = Date.now() - this.lastActivityMs;
    if (idle < this.idleMs) {
      this.idleTimer = setTimeout(onIdleCheck, this.idleMs - idle, this);
      return;
    }
    this.abortUpstream();
    if (!this.headersSent) return this.localReply(REASONS.streamIdleTimeout);
    this.reason = REASONS.streamIdleTimeout;
    this.resetDownstream();
    this.finish();
  }

  /** The attempt in flight passed the retry policy's per-try timeout: Envoy's UT, retried as a 504 would be. */
  onTryTimeout(): void {
    this.tryTimer = null;
    if (this.finished || this.headersSent) return;
    if (retriableFailure(this.retry!, 'perTryTimeout') && this.retryAfter('localFailure', REASONS.upstreamTimeout.httpStatus)) return;
    this.abortUpstream();
    this.localReply(REASONS.upstreamTimeout, 'per-try timeout');
  }

  /** The downstream connection cannot go on (bad bytes, request too slow): answer if still possible. */
  failDownstream(reason: Reason): void {
    if (this.finished) return;
    this.abortUpstream();
    if (!this.headersSent) {
      this.localReply(reason);
      return;
    }
    this.reason = reason;
    this.resetDownstream();
    this.finish();
  }

  /** The client went away before the response was complete: cancel upstream, release everything. */
  onDownstreamClosed(): void {
    if (this.finished) return;
    this.abortUpstream();
    if (this.reason === null) this.reason = REASONS.downstreamDisconnect;
    if (this.status === 0) this.status = REASONS.downstreamDisconnect.httpStatus;
    this.finish();
  }

  resumeUpstream(): void {
    this.upstream?.resume();
  }

  private abortUpstream(): void {
    const upstream = this.upstream;
    this.upstream = null;
    if (upstream !== null) upstream.abort();
  }

  private resetDownstream(): void {
    this.downstream!.reset(this.reason?.id ?? 'reset');
  }

  /** A response the proxy makes itself, tagged with its reason (see src/reasons.ts). */
  localReply(reason: Reason, detail?: string): void {
    this.reason = reason;
    this.ctx.stats.localReply(reason);
    const body = detail === undefined ? `${reason.message}\n` : `${reason.message}: ${detail}\n`;
    const sent = this.headersSent ? NOT_SENT : this.downstream!.localReply(reason, body);
    this.status = sent.status === 0 ? reason.httpStatus : sent.status;
    this.bytesSent += sent.bytes;
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    this.endAttempt(this.outcome(), this.status);
    if (this.holdTimer !== null) {
      clearTimeout(this.holdTimer);
      this.holdTimer = null;
      this.holdTracker!.holdEnded();
      this.holdTracker = null;
    }
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
    }
    if (this.holdsRetry) this.cluster!.retryEnded();
    const replayBody = this.replayBody;
    if (replayBody !== null) {
      replayBody.release();
      this.bytesReceived = replayBody.received;
    }
    this.ctx.stats.requestFinished(this, Number(process.hrtime.bigint() - this.startNs) / 1e9);
  }

  /** The call's outcome for outlier detection: the upstream's status, or the local reason the proxy ended it for. */
  private outcome(): CallOutcome {
    const reason = this.reason;
    if (reason === null) return httpOutcome(this.status, false);
    if (reason === REASONS.connectFailure || reason === REASONS.upstreamReset || reason === REASONS.upstreamTimeout || reason === REASONS.upstreamProtocolError) {
      return 'localFailure';
    }
    // The client went away, a pending queue overflowed, a deadline of the downstream: not the endpoint's doing.
    return 'ignored';
  }

  // --- access log fields ---
  get upstreamCluster(): string {
    return this.cluster?.model.name ?? '-';
  }
  get upstreamHost(): string {
    return this.endpoint?.key ?? '-';
  }
}

function onExchangeTimeout(exchange: HttpExchange): void {
  exchange.onTimeout();
}

function onIdleCheck(exchange: HttpExchange): void {
  exchange.onIdleCheck();
}

function onHoldEnd(exchange: HttpExchange): void {
  exchange.endHold();
}

function onTryTimeout(exchange: HttpExchange): void {
  exchange.onTryTimeout();
}

function onRetryTimer(exchange: HttpExchange): void {
  exchange.startAttempt();
}
