// HTTP/1.1 Upgrade (WebSocket and friends): route the request like any other, then splice the two sockets
// so the upgraded protocol passes through untouched. The upstream's 101 (or refusal) reaches the client as sent.
import * as net from 'node:net';
import type { TLSSocket } from 'node:tls';
import { directResponse, REASONS, type Reason } from '../reasons.js';
import type { FinishedRequest, HttpContext } from './context.js';
import { headerMapFromFlat, type FlatHeaders } from './h1-parser.js';
import { rawLocalReply } from './raw-reply.js';
import { HopSpan, TRACE_HEADERS, traceHeadersFor } from './tracing/span.js';
import { CLUSTER_OVERFLOW } from '../upstream/cluster-manager.js';
import { ALPN_HTTP11, readyEventOf } from '../tls/upstream-tls.js';
import { PEER_IDENTITY_ERROR, TLS_NOT_READY_ERROR } from '../tls/handshake-failures.js';
import { originalDstOf } from '../listener/original-dst.js';
import { parseAbsoluteForm } from './request-target.js';
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
 * An Upgrade request as the request counters and the access log see one: a refused Upgrade is counted and logged
 * through the same stats calls as any request the proxy answers itself (HttpExchange.localReply). One per Upgrade
 * (not a hot path); an Upgrade that is tunnelled is not logged.
 */
class UpgradeRecord implements FinishedRequest {
  readonly startPerfMs = performance.now();
  readonly direction: string;
  readonly protocol: 'HTTP/1.1' | 'HTTP/1.0';
  readonly method: string;
  authority = '';
  path = '';
  status = 0;
  readonly bytesReceived = 0;
  bytesSent = 0;
  upstreamCluster = '-';
  upstreamHost = '-';
  attempts = 0;
  reason: Reason | null = null;
  readonly requestId = '';
  span: HopSpan | null = null;
  readonly remoteAddress: string;
  readonly peer: PeerIdentity | null;

  constructor(ctx: HttpContext, req: UpgradeRequest, socket: net.Socket) {
    this.direction = ctx.direction;
    this.protocol = req.http11 ? 'HTTP/1.1' : 'HTTP/1.0';
    this.method = req.method;
    this.path = req.url;
    this.remoteAddress = socket.remoteAddress ?? '';
    this.peer = socketPeer(socket)?.identity ?? null;
  }
}

function refuse(ctx: HttpContext, socket: net.Socket, record: UpgradeRecord, reason: Reason, detail?: string): void {
  const stats = ctx.stats;
  stats.requestStarted(ctx.direction);
  stats.localReply(reason);
  const reply = rawLocalReply(reason, false, detail);
  socket.end(reply);
  record.reason = reason;
  record.status = reason.httpStatus;
  // The body's bytes, as an exchange counts its local reply's.
  record.bytesSent = Buffer.byteLength(reply.slice(reply.indexOf('\r\n\r\n') + 4));
  stats.requestFinished(record, (performance.now() - record.startPerfMs) / 1e3);
}

export function proxyUpgrade(ctx: HttpContext, req: UpgradeRequest, socket: net.Socket, head: Buffer): void {
  const record = new UpgradeRecord(ctx, req, socket);
  // CONNECT tunnels need a connect matcher, which the config model has not got (Envoy answers 404 then too).
  if (req.method === 'CONNECT') return refuse(ctx, socket, record, REASONS.noRoute, 'CONNECT is not supported (no connect matcher)');
  const headers = headerMapFromFlat(req.lines, null);
  const host = headers.host;
  // As the exchange path (Exchange.startH1) has it: `:scheme` matchers see the connection's scheme, or an
  // absolute-form target's, whose authority wins over Host and whose path is what routes match and goes upstream.
  const target = parseAbsoluteForm(req.url);
  const absolute = target !== null;
  const authority = target !== null ? target.authority : typeof host === 'string' ? host : '';
  const path = target !== null ? target.path : req.url;
  const matchScheme = target !== null ? target.scheme : (socket as TLSSocket).encrypted === true ? 'https' : 'http';
  record.authority = authority;
  record.path = path;
  // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host (and not in absolute form) is a 400, as on the
  // exchange path. The connection closes, as after any refused Upgrade: the parser has let go of the socket.
  if (authority === '' && req.http11) return refuse(ctx, socket, record, REASONS.badRequest, 'an HTTP/1.1 request needs one Host header');
  // As Exchange.route: the access log line of a refused request carries the caller's trace id too.
  record.span = new HopSpan(headers);
  if (ctx.overload.active) return refuse(ctx, socket, record, REASONS.overload);
  const table = ctx.routeTable();
  const dst = originalDstOf(socket);
  const route = table === null ? null : table.match(authority, req.method, path, headers, matchScheme, dst);
  if (route === null) return refuse(ctx, socket, record, REASONS.noRoute);
  const direct = route.directResponse;
  if (direct !== undefined) return refuse(ctx, socket, record, directResponse(direct.status), direct.body);
  const clusterName = ctx.pickCluster(route.action);
  record.upstreamCluster = clusterName;
  const cluster = ctx.clusters.get(clusterName);
  if (cluster === undefined) return refuse(ctx, socket, record, REASONS.noCluster);
  const remote = socket.remoteAddress ?? '';
  const hash = route.action.hashPolicies.length === 0 ? undefined : ctx.requestHash(route.action.hashPolicies, headers, authority, remote);
  const endpoint = cluster.startRequestCall(hash, dst);
  if (endpoint === null) return refuse(ctx, socket, record, REASONS.noHealthyUpstream);
  if (endpoint === CLUSTER_OVERFLOW) return refuse(ctx, socket, record, REASONS.overflow);

  const upstream =
    cluster.tls === null
      ? net.connect({ host: endpoint.address, port: endpoint.port })
      : cluster.tls.connect(endpoint.address, endpoint.port, ALPN_HTTP11, null);
  let connected = false;
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    cluster.endCall(endpoint, true, connected ? 'success' : 'ignored');
    socket.destroy();
    upstream.destroy();
  };
  const connectTimeoutMs = cluster.model.connectTimeoutMs;
  if (connectTimeoutMs > 0) upstream.setTimeout(connectTimeoutMs, () => upstream.destroy(new Error('connect timeout')));
  upstream.once(readyEventOf(upstream), () => {
    connected = true;
    // An upgraded connection (a WebSocket) that goes silent both ways is closed after the listener's idle timeout
    // (1 h by default), as a TCP session is: it must not hold two sockets for ever.
    const idleMs = ctx.chain.idleTimeoutMs;
    upstream.setTimeout(idleMs, release);
    socket.setTimeout(idleMs, release);
    let headText = `${req.method} ${path} HTTP/1.1\r\n`;
    const raw = req.lines;
    // An absolute-form target's authority replaces Host (RFC 9112 §3.2.2), as the exchange path sends it.
    if (absolute) headText += `host: ${authority}\r\n`;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!.toLowerCase();
      // A client's own XFCC is never passed on (Envoy's SANITIZE, as on the exchange path); ours replaces it below.
      if (name === 'x-forwarded-for' || name === XFCC_HEADER || TRACE_HEADERS.has(name) || (absolute && name === 'host')) continue;
      headText += `${raw[i]}: ${raw[i + 1]}\r\n`;
    }
    const peer = socketPeer(socket);
    if (peer !== null) headText += `${XFCC_HEADER}: ${peer.xfcc}\r\n`;
    // The upgrade request is a span of its trace at this hop too (see src/http/tracing/span.ts).
    const trace = traceHeadersFor(headers);
    for (const name in trace) {
      const value = trace[name]!;
      if (typeof value === 'string') headText += `${name}: ${value}\r\n`;
      else for (const v of value) headText += `${name}: ${v}\r\n`;
    }
    const xff = headers['x-forwarded-for'];
    headText += `x-forwarded-for: ${xff === undefined ? remote : `${xff}, ${remote}`}\r\n\r\n`;
    upstream.write(headText);
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
        record.upstreamHost = endpoint.key;
        record.attempts = 1;
        refuse(ctx, socket, record, connectReason(err), err.message);
      }
      return;
    }
    release();
  });
  upstream.on('close', release);
  socket.on('error', release);
  socket.on('close', release);
}
