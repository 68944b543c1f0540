// One HTTP request through the proxy, the connection manager's side of it: take the request from either downstream
// codec, match its route, run the chain's filters, hand it to the router (src/http/router), and write the response
// the router settles on, or a local reply. It owns what is the client's: the response state, the stream idle
// timeout, the access log fields. Socket and stream events reach it through shared functions, so a request
// allocates no closures.
import type { Readable } from 'node:stream';
import type { RouteModel } from '../config/model.js';
import { httpOutcome, type CallOutcome } from '../upstream/outlier.js';
import { directResponse, REASONS, type Reason } from '../reasons.js';
import type { FilterMetadata } from '../authz/model.js';
import type { FilteredRequest, HoldTracker, HttpFilter } from './filters/filter.js';
import type { HeaderMap } from './headers.js';
import type { HttpContext, RequestHeaders } from './context.js';
import type { H1Connection, H1Request } from './h1-connection.js';
import { NOT_SENT, type Downstream } from './downstream.js';
import { H2Downstream, type H2Owner } from './h2-downstream.js';
import type { H2Stream } from '../h2/stream.js';
import type { DecodedHead } from '../h2/hpack.js';
import { Router, type RouterOwner } from './router/router.js';
import { HopSpan } from './tracing/span.js';
import type { PeerIdentity } from '../tls/peer.js';
import { socketPeer, XFCC_HEADER } from '../tls/downstream-peer.js';
import { destinationPort, originalDstOf, type OriginalDestination } from '../listener/original-dst.js';
import { parseAbsoluteForm } from './request-target.js';
import { INVALID_PATH, normalizePath } from './path-normalize.js';

const PROTOCOL_H11 = 'HTTP/1.1';
const PROTOCOL_H10 = 'HTTP/1.0';
const PROTOCOL_H2 = 'HTTP/2';

export class HttpExchange implements RouterOwner, H2Owner, FilteredRequest {
  /** Where the response goes: the HTTP/1 connection, or the HTTP/2 stream's adapter. */
  private downstream: Downstream | null = null;
  protocol: 'HTTP/1.1' | 'HTTP/1.0' | 'HTTP/2' = PROTOCOL_H11;

  /**
   * performance.now() at the start: a double, not the BigInt hrtime.bigint() allocates twice per request. The
   * wall-clock start (the access log's start_time) is not read here: a clock read costs ~0.15 µs, and the log
   * derives it at the end from the duration, only when it is on.
   */
  private readonly startPerfMs = performance.now();
  method = '';
  authority = '';
  path = '';
  requestId = '';
  /** This hop's span (trace context), from when the request is routed; null before (a 400 on a bad head). */
  span: HopSpan | null = null;
  remoteAddress = '';
  /** Where the connection was going before iptables redirected it (transparent interception), if it was. */
  originalDst: OriginalDestination | undefined = undefined;
  /** The port the request's connection arrived on (RBAC destination_port). */
  localPort = 0;
  grpc = false;
  /** Who mTLS proved the client to be; null on a plaintext connection (authorization reads it). */
  peer: PeerIdentity | null = null;
  /** Written by filters for later ones (the JWT filter's verified payload); null until one does. */
  filterMetadata: FilterMetadata | null = null;
  /** The x-forwarded-client-cert value of the connection's peer, set on the request to the app. */
  private xfcc: string | null = null;

  private matched: RouteModel | null = null;
  // The request head and body, held from routing until the router takes them (filters may hold the request).
  requestHeaders: RequestHeaders | null = null;
  private requestBody: Readable | null = null;
  private scheme = 'http';
  private filters: readonly HttpFilter[] | null = null;
  private filterIndex = 0;
  private holdTimer: NodeJS.Timeout | null = null;
  private holdThen: Reason | null = null;
  private holdTracker: HoldTracker | null = null;
  /** The router of this request, once the filters let it through. */
  private router: Router | null = null;
  /** The stream idle timeout: armed once, re-armed lazily for what is left after the latest activity. */
  private idleTimer: NodeJS.Timeout | null = null;
  private idleMs = 0;
  private lastActivityMs = 0;

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
    // `:scheme` route matchers see what Envoy sets for HTTP/1: the connection's, or an absolute-form target's.
    let matchScheme = connection.encrypted ? 'https' : 'http';
    // Absolute-form (a client configured with HTTP_PROXY): its authority wins over Host (RFC 9112 §3.2.2).
    const absolute = parseAbsoluteForm(url);
    if (absolute !== null) {
      matchScheme = absolute.scheme;
      authority = absolute.authority;
      url = absolute.path;
    }
    this.authority = authority;
    const path = normalizePath(url);
    this.path = path ?? url;
    this.remoteAddress = connection.remoteAddress;
    this.localPort = connection.localPort;
    this.originalDst = originalDstOf(connection.socket);
    this.takePeer(connection.socket);
    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host (and not in absolute form) is a 400.
    if (authority === '' && req.http11) return this.localReply(REASONS.badRequest, 'an HTTP/1.1 request needs one Host header');
    if (path === null) return this.localReply(REASONS.badRequest, INVALID_PATH);
    this.route(req.headers, req.body, 'http', matchScheme);
  }

  startH2(stream: H2Stream, head: DecodedHead, endStream: boolean): void {
    this.protocol = PROTOCOL_H2;
    const headers = head.headers;
    const contentType = headers['content-type'];
    this.grpc = typeof contentType === 'string' && contentType.startsWith('application/grpc');
    const downstream = new H2Downstream(stream, this, this.grpc, head.method === 'HEAD', endStream, this.ctx.chain.requestTimeoutMs);
    this.downstream = downstream;
    const expect = headers.expect;
    if (typeof expect === 'string' && expect.toLowerCase() === '100-continue') downstream.sendContinue();
    this.method = head.method;
    const path = normalizePath(head.path);
    this.path = path ?? head.path;
    // The head's fields hold the pseudo headers (the map has none); a client that sends Host alone still names one.
    let authority = head.authority;
    if (authority === '') {
      const host = headers.host;
      if (typeof host === 'string') authority = host;
    }
    this.authority = authority;
    const socket = stream.session.socket;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.localPort = destinationPort(socket);
    this.originalDst = originalDstOf(socket);
    this.takePeer(socket);
    // CONNECT tunnels need a connect matcher, which the config model has not got: 404 as on HTTP/1 (and Envoy).
    if (head.method === 'CONNECT') return this.localReply(REASONS.noRoute, 'CONNECT is not supported (no connect matcher)');
    if (path === null) return this.localReply(REASONS.badRequest, INVALID_PATH);
    this.route(headers, downstream.requestBody(), head.scheme, head.scheme);
  }

  private takePeer(socket: object | undefined): void {
    const peer = socketPeer(socket);
    if (peer === null) return;
    this.peer = peer.identity;
    this.xfcc = peer.xfcc;
  }

  // --- routing and the filter chain ---

  /** `scheme` goes upstream (HTTP/1: always http, as before); `matchScheme` is what `:scheme` route matchers see. */
  private route(headers: RequestHeaders, body: Readable | null, scheme: string, matchScheme: string): void {
    const ctx = this.ctx;
    // Before any local reply, so the access log line of a refused request carries the caller's trace id too.
    this.span = new HopSpan(headers);
    if (ctx.overload.active) return this.localReply(REASONS.overload);
    const routes = ctx.routeTable();
    const route: RouteModel | null = routes === null ? null : routes.match(this.authority, this.method, this.path, headers, matchScheme, this.originalDst);
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

  /** Runs the chain's filters from where it stands; the router follows the last. */
  private runFilters(): void {
    const filters = this.filters!;
    const route = this.matched!;
    while (this.filterIndex < filters.length) {
      if (!filters[this.filterIndex++]!.onRequest(this, route)) return;
    }
    this.forward();
  }

  /** FilteredRequest.continueFilters: a filter that returned false for an async check lets the request go on. */
  continueFilters(): void {
    if (this.finished) return;
    this.runFilters();
  }

  get ended(): boolean {
    return this.finished;
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

  /** Hands the request to the router (the last filter), and arms the stream idle timeout when it needs a timer. */
  private forward(): void {
    const route = this.matched!;
    const direct = route.directResponse;
    if (direct !== undefined) return this.localReply(directResponse(direct.status), direct.body);
    const headers = this.requestHeaders!;
    const body = this.requestBody;
    this.requestHeaders = null;
    this.requestBody = null;
    // Envoy's default (SANITIZE): a client's own XFCC is never passed on; ours replaces it on mTLS connections.
    if (headers[XFCC_HEADER] !== undefined) delete headers[XFCC_HEADER];
    if (this.xfcc !== null) headers[XFCC_HEADER] = this.xfcc;
    const router = new Router(this.ctx, this);
    this.router = router;
    // Only when the route timeout would not end the stream first: long streams, gRPC streams without a deadline.
    const action = route.action;
    const idleMs = action.idleTimeoutMs > 0 ? action.idleTimeoutMs : this.ctx.chain.streamIdleTimeoutMs;
    const timeoutMs = router.timeoutMs(route, headers);
    // A request still arriving has no route timeout running yet (it starts at the request's end): the idle timer
    // is what bounds a client that stops sending mid-body.
    if (idleMs > 0 && (timeoutMs === 0 || idleMs < timeoutMs || !this.requestComplete())) {
      this.idleMs = idleMs;
      this.lastActivityMs = Date.now();
      this.idleTimer = setTimeout(onIdleCheck, idleMs, this);
    }
    router.start(route, headers, body, this.scheme, timeoutMs);
  }

  // --- RouterOwner: the response the router settled on ---

  onResponseHead(status: number, headers: HeaderMap, endStream: boolean): void {
    if (this.finished) return;
    if (this.idleTimer !== null) this.lastActivityMs = Date.now();
    this.status = status;
    this.headersSent = true;
    // Both upstream codecs (llhttp, the HTTP/2 header decoder) reject control characters in what they hand us, so the head is safe.
    this.downstream!.respond(status, headers, endStream);
  }

  onResponseData(chunk: Buffer): boolean {
    if (this.finished) return true;
    if (this.idleTimer !== null) this.lastActivityMs = Date.now();
    this.bytesSent += chunk.length;
    // On false, the downstream's drain calls resumeUpstream().
    return this.downstream!.write(chunk);
  }

  responseDataReleased(): boolean {
    return this.downstream!.lastWriteFlushed();
  }

  onResponseEnd(trailers: HeaderMap | null): void {
    if (this.finished) return;
    this.downstream!.end(trailers);
    this.finish();
  }

  /** The request's last byte arrived: the router starts the route and per-try timeouts it was holding back. */
  onRequestComplete(): void {
    if (!this.finished) this.router?.onRequestComplete();
  }

  requestComplete(): boolean {
    return this.downstream === null || this.downstream.requestComplete();
  }

  onRequestBodyBytes(bytes: number): void {
    if (this.idleTimer !== null) this.lastActivityMs = Date.now();
    this.bytesReceived += bytes;
  }

  onRouterFailure(reason: Reason, detail?: string): void {
    this.fail(reason, detail);
  }

  // --- timeouts, aborts and drains ---

  /** Ends the request for `reason`: a local reply while no response has started, else a cut response. */
  private fail(reason: Reason, detail?: string): void {
    if (this.finished) return;
    if (!this.headersSent) return this.localReply(reason, detail);
    // Mid-response: the client must see the failure, not a truncated success.
    this.reason = reason;
    this.downstream!.reset(reason.id);
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
    this.router?.abort();
    this.fail(REASONS.streamIdleTimeout);
  }

  /** The downstream connection cannot go on (bad bytes, request too slow): answer if still possible. */
  failDownstream(reason: Reason): void {
    if (this.finished) return;
    this.router?.abort();
    this.fail(reason);
  }

  /** The client went away before the response was complete: cancel upstream, release everything. */
  onDownstreamClosed(): void {
    if (this.finished) return;
    this.router?.abort(true);
    if (this.reason === null) this.reason = REASONS.downstreamDisconnect;
    if (this.status === 0) this.status = REASONS.downstreamDisconnect.httpStatus;
    this.finish();
  }

  resumeUpstream(): void {
    this.router?.resume();
  }

  /** A response the proxy makes itself, tagged with its reason (see src/reasons.ts). */
  localReply(reason: Reason, detail?: string): void {
    // An async filter may answer after the client went away.
    if (this.finished) return;
    this.reason = reason;
    this.ctx.stats.localReply(reason);
    const body = detail === undefined ? `${reason.message}\n` : reason.message === '' ? `${detail}\n` : `${reason.message}: ${detail}\n`;
    const sent = this.headersSent ? NOT_SENT : this.downstream!.localReply(reason, body);
    this.status = sent.status === 0 ? reason.httpStatus : sent.status;
    this.bytesSent += sent.bytes;
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    if (this.holdTimer !== null) {
      clearTimeout(this.holdTimer);
      this.holdTimer = null;
      this.holdTracker!.holdEnded();
      this.holdTracker = null;
    }
    // One clock read for the try's duration and the request's.
    const now = performance.now();
    const router = this.router;
    if (router !== null) {
      const replayed = router.end(this.outcome(), this.status, now);
      if (replayed >= 0) this.bytesReceived = replayed;
    }
    this.ctx.stats.requestFinished(this, (now - this.startPerfMs) / 1e3);
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
    return this.router?.clusterName ?? '-';
  }
  get upstreamHost(): string {
    return this.router?.endpointKey ?? '-';
  }
  get attempts(): number {
    return this.router?.attempts ?? 0;
  }
}

function onIdleCheck(exchange: HttpExchange): void {
  exchange.onIdleCheck();
}

function onHoldEnd(exchange: HttpExchange): void {
  exchange.endHold();
}
