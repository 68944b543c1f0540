// HTTP/1.1 Upgrade (WebSocket and friends): route the request and run the listener's HTTP filters (RBAC, JWT,
// rate limit, fault) like any other, then splice the two sockets so the upgraded protocol passes through
// untouched. The upstream's 101 (or refusal) reaches the client as sent.
import * as net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { directResponse, REASONS, type Reason } from '../reasons.js';
import type { FinishedRequest, HttpContext, RequestHeaders } from './context.js';
import type { FilteredRequest, HoldTracker, HttpFilter } from './filters/filter.js';
import type { RouteModel } from '../config/model.js';
import type { FilterMetadata } from '../authz/model.js';
import { newRequestId } from './request-id.js';
import { headerMapFromFlat, serializeHeaders, type FlatHeaders } from './h1-parser.js';
import { rawLocalReply } from './raw-reply.js';
import { HopSpan, TRACE_HEADERS, traceHeadersFor } from './tracing/span.js';
import { CLUSTER_OVERFLOW, type UpstreamCluster } from '../upstream/cluster-manager.js';
import type { EndpointState } from '../upstream/types.js';
import { ALPN_HTTP11, readyEventOf } from '../tls/upstream-tls.js';
import { PEER_IDENTITY_ERROR, TLS_NOT_READY_ERROR } from '../tls/handshake-failures.js';
import { destinationPort, originalDstOf } from '../listener/original-dst.js';
import { parseAbsoluteForm } from './request-target.js';
import { INVALID_PATH, normalizePath } from './path-normalize.js';
import type { PeerIdentity } from '../tls/peer.js';
import { socketPeer, XFCC_HEADER } from '../tls/downstream-peer.js';

/** Why an upstream connection failed before it carried anything, as the reason the client is answered with. */
function connectReason(err: Error): Reason {
  const code = (err as NodeJS.ErrnoException).code;
  return code === PEER_IDENTITY_ERROR ? REASONS.peerIdentity : code === TLS_NOT_READY_ERROR ? REASONS.tlsNotReady : REASONS.connectFailure;
}

/** An HTTP/1.1 request head that asked for Upgrade (or CONNECT). */
export interface UpgradeRequest {
  readonly method: string;
  readonly url: string;
  /** Header lines as received, forwarded as they are (but x-forwarded-for). */
  readonly lines: FlatHeaders;
  /** HTTP/1.1 or later (an HTTP/1.0 request needs no Host). */
  readonly http11: boolean;
}

/**
 * An Upgrade request from its head to the splice. The listener's HTTP filters see it as they see any request
 * (FilteredRequest): an RBAC deny, a missing JWT, a rate limit or a fault abort answers it before any upstream
 * connection is made, and a filter's header edits (a JWT filter removing the token) are what goes upstream.
 * It is also what the request counters, the active-request gauge and the access log read (FinishedRequest), through
 * the same stats calls as any request: a refused Upgrade when it is answered, a tunnelled one when the tunnel
 * closes (Envoy's rule: status as the upstream answered, duration and bytes over the tunnel's life). One per
 * Upgrade (not a hot path).
 */
class UpgradeExchange implements FinishedRequest, FilteredRequest {
  readonly startPerfMs = performance.now();
  readonly direction: string;
  readonly protocol: 'HTTP/1.1' | 'HTTP/1.0';
  readonly method: string;
  authority = '';
  path = '';
  status = 0;
  bytesReceived = 0;
  bytesSent = 0;
  upstreamCluster = '-';
  upstreamHost = '-';
  attempts = 0;
  reason: Reason | null = null;
  requestId = '';
  span: HopSpan | null = null;
  readonly remoteAddress: string;
  readonly peer: PeerIdentity | null;
  readonly localPort: number;
  readonly grpc = false;
  requestHeaders: RequestHeaders | null = null;
  filterMetadata: FilterMetadata | null = null;
  /** Refused, spliced, or the client went away: filters must not touch it any more. */
  ended = false;
  /** Counted as finished (and logged): once, whichever way it ends. */
  private finished = false;
  private filters: readonly HttpFilter[] = [];
  private filterIndex = 0;
  private route: RouteModel | null = null;
  private absolute = false;
  private holdTimer: NodeJS.Timeout | null = null;
  private holdTracker: HoldTracker | null = null;
  private holdThen: Reason | null = null;

  constructor(
    private readonly ctx: HttpContext,
    private readonly req: UpgradeRequest,
    private readonly socket: net.Socket,
    private readonly head: Buffer,
  ) {
    this.direction = ctx.direction;
    this.protocol = req.http11 ? 'HTTP/1.1' : 'HTTP/1.0';
    this.method = req.method;
    this.path = req.url;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.localPort = destinationPort(socket);
    this.peer = socketPeer(socket)?.identity ?? null;
  }

  start(): void {
    const { ctx, req, socket } = this;
    ctx.stats.requestStarted(ctx.direction);
    // A client that goes away while a filter holds or checks the request ends it (and any hold) there. Its FIN
    // counts too: listener sockets allow half-open, and a half-closed client can have no upgraded protocol.
    socket.once('close', () => this.clientGone());
    socket.once('end', () => this.clientGone());
    // CONNECT tunnels need a connect matcher, which the config model has not got (Envoy answers 404 then too).
    if (req.method === 'CONNECT') return this.localReply(REASONS.noRoute, 'CONNECT is not supported (no connect matcher)');
    const headers = headerMapFromFlat(req.lines, null);
    const host = headers.host;
    // As the exchange path (Exchange.startH1) has it: `:scheme` matchers see the connection's scheme, or an
    // absolute-form target's, whose authority wins over Host and whose path is what routes match and goes upstream.
    const target = parseAbsoluteForm(req.url);
    this.absolute = target !== null;
    const authority = target !== null ? target.authority : typeof host === 'string' ? host : '';
    const raw = target !== null ? target.path : req.url;
    const path = normalizePath(raw);
    const matchScheme = target !== null ? target.scheme : (socket as TLSSocket).encrypted === true ? 'https' : 'http';
    this.authority = authority;
    this.path = path ?? raw;
    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host (and not in absolute form) is a 400, as on the
    // exchange path. The connection closes, as after any refused Upgrade: the parser has let go of the socket.
    if (authority === '' && req.http11) return this.localReply(REASONS.badRequest, 'an HTTP/1.1 request needs one Host header');
    if (path === null) return this.localReply(REASONS.badRequest, INVALID_PATH);
    // As Exchange.route: the access log line of a refused request carries the caller's trace id too.
    this.span = new HopSpan(headers);
    if (ctx.overload.active) return this.localReply(REASONS.overload);
    const table = ctx.routeTable();
    const route = table === null ? null : table.match(authority, req.method, path, headers, matchScheme, originalDstOf(socket));
    if (route === null) return this.localReply(REASONS.noRoute);
    this.route = route;
    this.requestHeaders = headers;
    this.filters = ctx.filters();
    this.runFilters();
  }

  // --- FilteredRequest ---

  continueFilters(): void {
    if (!this.ended) this.runFilters();
  }

  localReply(reason: Reason, detail?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.clearHold();
    this.ctx.stats.localReply(reason);
    const reply = rawLocalReply(reason, false, detail);
    this.socket.end(reply);
    this.reason = reason;
    this.status = reason.httpStatus;
    // The body's bytes, as an exchange counts its local reply's.
    this.bytesSent = Buffer.byteLength(reply.slice(reply.indexOf('\r\n\r\n') + 4));
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.ctx.stats.requestFinished(this, (performance.now() - this.startPerfMs) / 1e3);
  }

  /** The tunnel is over (either side closed, or it idled out): one log line for its whole life. */
  tunnelClosed(status: number, bytesFromClient: number, bytesToClient: number, reason: Reason | null): void {
    this.status = status;
    this.bytesReceived = bytesFromClient;
    this.bytesSent = bytesToClient;
    this.reason = reason;
    this.finish();
  }

  hold(ms: number, then: Reason | null, tracker: HoldTracker): void {
    this.holdThen = then;
    this.holdTracker = tracker;
    this.holdTimer = setTimeout(() => {
      this.holdTimer = null;
      this.endHold();
      if (this.ended) return;
      if (this.holdThen !== null) return this.localReply(this.holdThen);
      this.runFilters();
    }, ms);
  }

  private endHold(): void {
    const tracker = this.holdTracker;
    this.holdTracker = null;
    tracker?.holdEnded();
  }

  private clearHold(): void {
    if (this.holdTimer !== null) {
      clearTimeout(this.holdTimer);
      this.holdTimer = null;
    }
    this.endHold();
  }

  private clientGone(): void {
    if (this.ended) return;
    this.ended = true;
    this.socket.destroy();
    this.clearHold();
    this.reason = REASONS.downstreamDisconnect;
    this.status = REASONS.downstreamDisconnect.httpStatus;
    this.finish();
  }

  /** Runs the chain's filters from where it stands; the splice follows the last. */
  private runFilters(): void {
    const route = this.route!;
    while (this.filterIndex < this.filters.length) {
      if (!this.filters[this.filterIndex++]!.onRequest(this, route)) return;
    }
    this.forward(route);
  }

  private forward(route: RouteModel): void {
    const { ctx, socket } = this;
    const direct = route.directResponse;
    if (direct !== undefined) return this.localReply(directResponse(direct.status), direct.body);
    const headers = this.requestHeaders!;
    const clusterName = ctx.pickCluster(route.action);
    this.upstreamCluster = clusterName;
    const cluster = ctx.clusters.get(clusterName);
    if (cluster === undefined) return this.localReply(REASONS.noCluster);
    const remote = this.remoteAddress;
    const hash = route.action.hashPolicies.length === 0 ? undefined : ctx.requestHash(route.action.hashPolicies, headers, this.authority, remote);
    const endpoint = cluster.startRequestCall(hash, originalDstOf(socket));
    if (endpoint === null) return this.localReply(REASONS.noHealthyUpstream);
    if (endpoint === CLUSTER_OVERFLOW) return this.localReply(REASONS.overflow);
    // From here the socket belongs to the splice.
    this.ended = true;
    this.requestHeaders = null;
    spliceUpstream(this, cluster, endpoint, headers);
  }

  /** The upgrade request as it goes upstream: the filters' view of the headers, with ours added. */
  upstreamHead(headers: RequestHeaders): string {
    const remote = this.remoteAddress;
    let headText = `${this.req.method} ${this.path} HTTP/1.1\r\n`;
    // An absolute-form target's authority replaces Host (RFC 9112 §3.2.2), as the exchange path sends it.
    if (this.absolute) headText += `host: ${this.authority}\r\n`;
    let requestId = '';
    for (const name in headers) {
      // A client's own XFCC is never passed on (Envoy's SANITIZE, as on the exchange path); ours replaces it below.
      if (name === 'x-forwarded-for' || name === XFCC_HEADER || TRACE_HEADERS.has(name) || (this.absolute && name === 'host')) continue;
      const value = headers[name];
      if (value === undefined) continue;
      if (name === 'x-request-id') requestId = typeof value === 'string' ? value : value[0]!;
      if (typeof value === 'string') headText += `${name}: ${value}\r\n`;
      else for (const v of value) headText += `${name}: ${v}\r\n`;
    }
    if (requestId === '' && this.ctx.chain.generateRequestId) {
      requestId = newRequestId();
      headText += `x-request-id: ${requestId}\r\n`;
    }
    this.requestId = requestId;
    const peer = socketPeer(this.socket);
    if (peer !== null) headText += `${XFCC_HEADER}: ${peer.xfcc}\r\n`;
    // The upgrade request is a span of its trace at this hop too (see src/http/tracing/span.ts).
    headText = serializeHeaders(headText, traceHeadersFor(headers));
    const xff = headers['x-forwarded-for'];
    headText += `x-forwarded-for: ${xff === undefined ? remote : `${String(xff)}, ${remote}`}\r\n\r\n`;
    return headText;
  }

  get idleTimeoutMs(): number {
    return this.ctx.chain.idleTimeoutMs;
  }

  /** The upstream connection failed before it carried anything: the client is answered (the splice let go). */
  connectFailed(endpointKey: string, reason: Reason, detail: string): void {
    this.upstreamHost = endpointKey;
    this.attempts = 1;
    this.ended = false;
    this.localReply(reason, detail);
  }

  connected(endpointKey: string): void {
    this.upstreamHost = endpointKey;
    this.attempts = 1;
  }

  get clientSocket(): net.Socket {
    return this.socket;
  }

  get bufferedHead(): Buffer {
    return this.head;
  }
}

export function proxyUpgrade(ctx: HttpContext, req: UpgradeRequest, socket: net.Socket, head: Buffer): void {
  new UpgradeExchange(ctx, req, socket, head).start();
}

/** Connects to the endpoint, sends the upgrade request, then pipes the two sockets until either side ends. */
function spliceUpstream(ex: UpgradeExchange, cluster: UpstreamCluster, endpoint: EndpointState, headers: RequestHeaders): void {
  const socket = ex.clientSocket;
  const upstream =
    cluster.tls === null
      ? net.connect({ host: endpoint.address, port: endpoint.port })
      : cluster.tls.connect(endpoint.address, endpoint.port, ALPN_HTTP11, null);
  let connected = false;
  let released = false;
  // What the access log line says at the end: the upstream's status (its first line), bytes each way.
  let status = 0;
  let fromClient = ex.bufferedHead.length;
  let toClient = 0;
  let reason: Reason | null = null;
  const release = (): void => {
    if (released) return;
    released = true;
    cluster.endCall(endpoint, true, connected ? 'success' : 'ignored');
    socket.destroy();
    upstream.destroy();
    ex.tunnelClosed(status === 0 ? (reason?.httpStatus ?? 0) : status, fromClient, toClient, reason);
  };
  // A side that closes before the upstream said anything names the log line's reason, as on the exchange path.
  const clientClosed = (): void => {
    if (toClient === 0 && reason === null) reason = REASONS.downstreamDisconnect;
    release();
  };
  const upstreamClosed = (): void => {
    if (toClient === 0 && reason === null) reason = REASONS.upstreamReset;
    release();
  };
  const connectTimeoutMs = cluster.model.connectTimeoutMs;
  if (connectTimeoutMs > 0) upstream.setTimeout(connectTimeoutMs, () => upstream.destroy(new Error('connect timeout')));
  upstream.once(readyEventOf(upstream), () => {
    connected = true;
    ex.connected(endpoint.key);
    socket.on('data', (chunk: Buffer) => (fromClient += chunk.length));
    upstream.on('data', (chunk: Buffer) => {
      if (toClient === 0) status = statusOf(chunk);
      toClient += chunk.length;
    });
    // An upgraded connection (a WebSocket) that goes silent both ways is closed after the listener's idle timeout
    // (1 h by default), as a TCP session is: it must not hold two sockets for ever.
    const idleMs = ex.idleTimeoutMs;
    upstream.setTimeout(idleMs, release);
    socket.setTimeout(idleMs, release);
    upstream.write(ex.upstreamHead(headers));
    const head = ex.bufferedHead;
    if (head.length > 0) upstream.write(head);
    socket.pipe(upstream);
    upstream.pipe(socket);
  });
  upstream.on('error', (err: Error) => {
    if (!connected) {
      cluster.stats.connectFailure();
      if (!released) {
        released = true;
        cluster.endCall(endpoint, true, 'localFailure');
        upstream.destroy();
        // As the router logs a failed attempt: the endpoint tried, and why (in the body too).
        ex.connectFailed(endpoint.key, connectReason(err), err.message);
      }
      return;
    }
    upstreamClosed();
  });
  upstream.on('close', upstreamClosed);
  socket.on('error', clientClosed);
  socket.on('close', clientClosed);
}

/** The status code of an HTTP/1 response's first bytes ('HTTP/1.1 101 ...'); 0 when they are not one. */
function statusOf(chunk: Buffer): number {
  if (chunk.length < 12 || chunk[0] !== 0x48 || chunk[8] !== 0x20) return 0;
  let code = 0;
  for (let i = 9; i < 12; i++) {
    const d = chunk[i]! - 0x30;
    if (d < 0 || d > 9) return 0;
    code = code * 10 + d;
  }
  return code;
}
