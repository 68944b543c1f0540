// HTTP/2 connection pool for one endpoint (cleartext prior knowledge, or TLS with ALPN h2), on Pillion's own
// codec (src/h2/session.ts, client role): one multiplexed session, more when the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS is reached (up to the cluster's max_connections), and a FIFO of requests
// waiting for stream capacity. A request in flight is one H2Request: it is the stream's owner (the session
// calls its methods) and the sink's handle; its body's listeners are shared functions that find it through a
// symbol, so a request allocates no closures.
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import { directSourceOf, pendingOverflowError, REFUSED_STREAM, requestTrailersOf, UPSTREAM_MALFORMED, type ConnectionPool, type DirectBodyConsumer, type DirectBodySource, type PoolOptions, type UpstreamRequestSpec, type UpstreamSink, type UpstreamStream } from './pool.js';
import { dropHopByHop, type HeaderMap } from '../http/headers.js';
import { ResetBudget } from './reset-budget.js';
import { ALPN_H2, isTlsPolicyError, readyEventOf } from '../tls/upstream-tls.js';
import { H2Error, h2ErrorName } from '../h2/errors.js';
import { H2Session, type H2SessionOptions, type H2SessionOwner } from '../h2/session.js';
import type { H2Stream, H2StreamOwner } from '../h2/stream.js';
import type { DecodedHead } from '../h2/hpack.js';

const IDLE_SESSION_TIMEOUT_MS = 60_000;
/** How often a session is checked for idleness (it closes 60 to 70 s after its last frame with no stream). */
const IDLE_CHECK_MS = 10_000;
/** How often a cancel that the reset budget held back is tried again (the stream may also finish first). */
const DEFERRED_RESET_RETRY_MS = 1_000;
/**
 * The connection-level receive window (RFC 9113's default, 65,535 bytes, is shared by every stream of the
 * connection: a few busy gRPC streams stall on it). Each stream keeps its own 64 KiB window, so this bounds what
 * one connection can buffer, not what one stream can.
 */
const CONNECTION_WINDOW_BYTES = 1 << 20;

/**
 * What we accept from an upstream: a response head (or trailers) larger than 64 KiB or with more than 128
 * fields is refused (RST_STREAM, 503 upstream_reset), as Node's http2 client did by default.
 */
const SESSION_OPTIONS: H2SessionOptions = Object.freeze({
  maxConcurrentStreams: 100, // not sent in client role (the upstream opens no streams: push is off)
  maxHeaderListSize: 64 * 1024,
  maxHeaderCount: 128,
  connectionWindowSize: CONNECTION_WINDOW_BYTES,
});

const kRequest = Symbol('pillion.h2request');
const kSession = Symbol('pillion.h2poolSession');
type BodyOf = Readable & { [kRequest]?: H2Request | undefined };
type SocketOf = net.Socket & { [kSession]: Session };

/** One upstream connection and what the pool knows of it. */
class Session implements H2SessionOwner {
  readonly h2: H2Session;
  /** Requests on it whose stream is not closed yet (counted against the peer's stream limit). */
  active = 0;
  /** The socket (TCP, and TLS if any) is up: failures before that are connect failures (Envoy's UF). */
  connected = false;
  /** Takes no new streams (drain, GOAWAY, reset budget spent, failed); closed once `active` is 0. */
  closing = false;
  /** Why it failed before it was connected, or a TLS policy refusal (answered with its own reason). */
  error: Error | null = null;
  connectTimer: NodeJS.Timeout | null = null;
  idleTimer: NodeJS.Timeout | null = null;
  readonly resets = new ResetBudget(performance.now());

  constructor(
    readonly pool: Http2Pool,
    readonly socket: SocketOf,
  ) {
    // Our listeners go first, so `error` is known before the session fails the streams with it.
    socket[kSession] = this;
    socket.on('error', onSocketError);
    socket.once(readyEventOf(socket), onSocketReady);
    this.h2 = new H2Session(socket, 'client', SESSION_OPTIONS, this);
  }

  get hasCapacity(): boolean {
    return !this.closing && this.h2.canOpen && this.active < this.h2.peerMaxConcurrentStreams;
  }

  // --- H2SessionOwner ---

  onStream(): void {
    // Client role: the session refuses streams the upstream opens (push is off); never called.
  }

  onRemoteSettings(): void {
    // The peer's stream limit is known (or changed): waiting requests may fit now.
    this.pool.pump(this);
  }

  onGoaway(): void {
    // Streams above the GOAWAY's last id already got onReset(REFUSED_STREAM); the others may finish.
    this.closing = true;
    if (this.active === 0) this.h2.close();
  }

  onSessionClose(): void {
    this.closing = true;
    if (this.connectTimer !== null) clearTimeout(this.connectTimer);
    if (this.idleTimer !== null) clearInterval(this.idleTimer);
    this.connectTimer = this.idleTimer = null;
    this.pool.sessionClosed(this);
  }
}

function onSocketReady(this: SocketOf): void {
  const session = this[kSession];
  session.connected = true;
  if (session.connectTimer !== null) clearTimeout(session.connectTimer);
  session.connectTimer = null;
  session.pool.options.events.onConnectionOpen();
}

function onSocketError(this: SocketOf, err: Error): void {
  // The session ends itself on it (its own 'error' listener) and fails the open streams; they report this.
  const session = this[kSession];
  if (!session.connected || isTlsPolicyError(err)) session.error ??= err;
  session.closing = true;
}

function onConnectTimeout(session: Session, ms: number): void {
  session.connectTimer = null;
  session.error ??= Object.assign(new Error(`connect timeout after ${ms} ms`), { code: 'ETIMEDOUT' });
  session.closing = true;
  session.h2.destroy(H2Error.CANCEL, session.error.message);
}

function checkIdle(session: Session): void {
  if (session.active === 0 && performance.now() - session.h2.lastActivityMs >= IDLE_SESSION_TIMEOUT_MS) {
    session.closing = true;
    session.h2.close();
  }
}

/** A cancel the reset budget held back: reset now if the budget allows, else later (unless it finished). */
function retryDeferredReset(req: H2Request): void {
  if (!req.released) req.pool.resetCancelled(req);
}

function onBodyData(this: BodyOf, chunk: Buffer): void {
  const req = this[kRequest];
  if (req !== undefined) req.writeBody(chunk);
}

function onBodyEnd(this: BodyOf): void {
  const req = this[kRequest];
  if (req !== undefined) req.endBody();
}

/** One request in flight: the owner of its stream and the sink's handle on it. */
class H2Request implements UpstreamStream, H2StreamOwner, DirectBodyConsumer {
  stream: H2Stream | null = null;
  session: Session | null = null;
  /** The sink has had its last callback (end or error), or the request was cancelled: events are dropped. */
  finished = false;
  aborted = false;
  /** The stream is over for the pool (its place in the session's limit is given back). */
  released = false;
  /** The response ended (END_STREAM). */
  remoteEnded = false;
  /** The request went out whole: no body, or END_STREAM after it. */
  localEnded = false;
  /** The body's listeners are attached (or its source hands us its chunks directly). */
  private bodyAttached = false;
  /** The body's source when it hands us its chunks directly (an HTTP/2 downstream); null on the Readable path. */
  private direct: DirectBodySource | null = null;
  /** Already started again once after the upstream refused it unprocessed (GOAWAY). */
  restarted = false;

  constructor(
    readonly pool: Http2Pool,
    readonly spec: UpstreamRequestSpec,
    readonly sink: UpstreamSink,
  ) {}

  // --- UpstreamStream (the sink steering the request) ---

  resume(): void {
    this.stream?.resume();
  }

  abort(): void {
    if (this.finished) return;
    this.aborted = true;
    this.finished = true;
    // No more of the request body, and above all not its end: a cancelled request must never look complete.
    this.detachBody();
    if (this.stream === null) this.pool.cancelWaiting(this);
    else if (this.released) return;
    // Both sides ended (a sink that lets go in onUpstreamHeaders of a bodyless response): nothing to reset.
    else if ((this.remoteEnded && this.localEnded) || this.stream.closed) this.pool.release(this);
    else this.pool.resetCancelled(this);
  }

  // --- request body ---

  attachBody(body: BodyOf): void {
    this.bodyAttached = true;
    const direct = directSourceOf(body);
    if (direct !== null && direct.attachDirect(this)) {
      this.direct = direct;
      return;
    }
    body[kRequest] = this;
    body.on('data', onBodyData);
    body.on('end', onBodyEnd);
  }

  detachBody(): void {
    if (!this.bodyAttached) return;
    this.bodyAttached = false;
    const direct = this.direct;
    if (direct !== null) {
      this.direct = null;
      direct.detachDirect(this);
      return;
    }
    const body = this.spec.body as BodyOf;
    body.off('data', onBodyData);
    body.off('end', onBodyEnd);
    body[kRequest] = undefined;
  }

  writeBody(chunk: Buffer): void {
    // After the response ended the rest of the body still goes out (see responseBeforeBody), uncounted.
    if (!this.finished) this.sink.onRequestBodyBytes(chunk.length);
    if (!this.stream!.write(chunk)) this.spec.body!.pause();
  }

  endBody(): void {
    this.detachBody();
    this.localEnded = true;
    this.stream!.end(requestTrailersOf(this.spec.body!));
    if (this.remoteEnded) this.pool.release(this);
  }

  // --- DirectBodyConsumer (the body's chunks straight from an HTTP/2 downstream) ---

  directData(chunk: Buffer): boolean {
    if (!this.finished) this.sink.onRequestBodyBytes(chunk.length);
    return this.stream!.write(chunk);
  }

  directEnd(trailers: HeaderMap | null): void {
    // The source let go of us already (its end is its last call): nothing to detach.
    this.direct = null;
    this.bodyAttached = false;
    this.localEnded = true;
    this.stream!.end(trailers);
    if (this.remoteEnded) this.pool.release(this);
  }

  // --- H2StreamOwner (the session reporting the stream) ---

  onHead(stream: H2Stream, head: DecodedHead, endStream: boolean): void {
    // A head with END_STREAM is the whole response: no onEnd follows it.
    if (endStream) this.remoteEnded = true;
    if (!this.finished) this.sink.onUpstreamHeaders(head.status, dropHopByHop(head.headers), endStream);
    if (endStream) this.ended(stream, null);
  }

  onData(stream: H2Stream, chunk: Buffer): void {
    // A cancelled stream's response is read and dropped (its window credit goes back all the same).
    if (this.finished) return;
    if (!this.sink.onUpstreamData(chunk)) stream.pause();
  }

  onEnd(stream: H2Stream, trailers: HeaderMap | null): void {
    this.remoteEnded = true;
    this.ended(stream, trailers);
  }

  private ended(stream: H2Stream, trailers: HeaderMap | null): void {
    if (this.localEnded) this.pool.release(this);
    else if (!this.aborted) this.pool.responseBeforeBody(this, stream);
    // Cancelled with the reset deferred: the stream is released once the reset goes out.
    if (this.finished) return;
    this.finished = true;
    this.sink.onUpstreamEnd(trailers === null ? null : dropHopByHop(trailers));
  }

  onReset(stream: H2Stream, code: number, why: string): void {
    this.detachBody();
    this.pool.release(this);
    if (this.finished) return;
    const session = this.session!;
    // RFC 9113 §6.8: a stream above a GOAWAY's last stream id was never processed. Without a body to replay it
    // is sent again on another session (as Envoy does); with one the router decides (retry_on refused-stream).
    if (code === H2Error.REFUSED_STREAM && !this.restarted && this.spec.body === null && !session.h2.canOpen) {
      this.restarted = true;
      this.stream = null;
      this.session = null;
      this.pool.restart(this);
      return;
    }
    this.finished = true;
    const failed = session.error;
    const err =
      failed !== null && (!session.connected || isTlsPolicyError(failed))
        ? failed
        : new Error(`the upstream HTTP/2 stream was reset: ${h2ErrorName(code)} (${code}), ${why}`);
    // An invalid response (502 upstream_protocol_error, as llhttp's refusals on HTTP/1.1), not a reset (503).
    if (stream.malformed) (err as NodeJS.ErrnoException).code = UPSTREAM_MALFORMED;
    this.sink.onUpstreamError(err, !session.connected);
  }

  onDrain(): void {
    if (!this.bodyAttached) return;
    if (this.direct !== null) this.direct.resumeDirect();
    else this.spec.body!.resume();
  }
}

export class Http2Pool implements ConnectionPool {
  private readonly sessions: Session[] = [];
  private readonly waiting: H2Request[] = [];
  private draining = false;
  private readonly host: string;
  private readonly port: number;

  constructor(
    origin: string,
    readonly options: PoolOptions,
  ) {
    const url = new URL(origin);
    const h = url.hostname;
    // A URL's host as a socket address (IPv6 without its brackets).
    this.host = h.startsWith('[') ? h.slice(1, -1) : h;
    this.port = Number(url.port);
  }

  get pending(): number {
    return this.waiting.length;
  }

  get connections(): number {
    return this.sessions.length;
  }

  request(spec: UpstreamRequestSpec, sink: UpstreamSink): UpstreamStream {
    const tls = this.options.tls ?? null;
    if (tls !== null) {
      // No secrets yet: answered now, not after a session that could never be made.
      const notReady = tls.notReady();
      if (notReady !== null) {
        sink.onUpstreamError(notReady, true);
        return REFUSED_STREAM;
      }
    }
    const req = new H2Request(this, spec, sink);
    return this.place(req) ? req : REFUSED_STREAM;
  }

  /** Starts the request on a session with room, or queues it; false when the queue is full (reported). */
  private place(req: H2Request): boolean {
    const session = this.sessionWithCapacity();
    if (session !== null) {
      this.start(req, session);
      return true;
    }
    const pending = this.options.pending;
    if (!pending.tryAdd()) {
      this.options.events.onPendingOverflow();
      req.finished = true;
      req.sink.onUpstreamError(pendingOverflowError(pending.max), false);
      return false;
    }
    this.waiting.push(req);
    req.sink.onUpstreamQueued?.();
    return true;
  }

  /** A bodyless request the upstream refused unprocessed (GOAWAY): on another session, or an error if none. */
  restart(req: H2Request): void {
    if (this.draining) {
      req.finished = true;
      req.sink.onUpstreamError(new Error('the upstream HTTP/2 connection went away (GOAWAY) before the request was processed, and the pool is closing'), false);
      return;
    }
    this.place(req);
  }

  /**
   * Cancels a stream in flight with RST_STREAM CANCEL while the connection's reset budget allows. Past it, the
   * stream is left to finish and its response read and dropped (the upstream does the work no one waits for,
   * the price of not being taken for a flood), the connection takes no new streams (a fresh one does), and the
   * reset is retried later for streams that never finish. Never END_STREAM: the body may be truncated.
   */
  resetCancelled(req: H2Request): void {
    const session = req.session!;
    const stream = req.stream!;
    if (session.resets.tryTake(performance.now())) {
      stream.reset(H2Error.CANCEL);
      this.release(req);
      return;
    }
    if (!session.closing) {
      session.closing = true;
      this.options.events.onResetDeferred();
    }
    stream.resume();
    setTimeout(retryDeferredReset, DEFERRED_RESET_RETRY_MS, req).unref();
  }

  /**
   * The response ended while the request body was still going out (RFC 9113 §8.1 allows it): the rest is not
   * wanted, RST_STREAM NO_ERROR says so and gives the stream's slot back (Envoy resets it too). Past the reset
   * budget as well: left to the body's end, a slow upload would hold one of the upstream's concurrent streams for
   * nothing. The session then takes no new streams (as in resetCancelled), so what one connection resets stays
   * within the budget plus the streams open on it, under nghttp2's flood bound.
   */
  responseBeforeBody(req: H2Request, stream: H2Stream): void {
    const session = req.session!;
    if (!session.resets.tryTake(performance.now()) && !session.closing) {
      session.closing = true;
      this.options.events.onResetDeferred();
    }
    req.detachBody();
    stream.reset(H2Error.NO_ERROR);
    this.release(req);
  }

  cancelWaiting(req: H2Request): void {
    const i = this.waiting.indexOf(req);
    if (i < 0) return;
    this.waiting.splice(i, 1);
    this.options.pending.remove();
  }

  /** The request's stream is over: its place in the session's stream limit goes to a waiting request. */
  release(req: H2Request): void {
    if (req.released || req.session === null) return;
    req.released = true;
    const session = req.session;
    session.active--;
    this.pump(session);
  }

  /** Starts waiting requests on `session` while it has room; closes it once idle if it takes no more. */
  pump(session: Session): void {
    while (this.waiting.length > 0 && session.hasCapacity) {
      this.options.pending.remove();
      const req = this.waiting.shift()!;
      req.sink.onUpstreamDequeued?.();
      this.start(req, session);
    }
    // Not canOpen: a GOAWAY either way, or its stream ids are used up (2^30 requests: a day and more of a busy
    // sidecar's traffic on one connection); new requests go to a fresh session.
    if (session.active === 0 && (this.draining || session.closing || !session.h2.canOpen)) session.h2.close();
  }

  sessionClosed(session: Session): void {
    const i = this.sessions.indexOf(session);
    if (i >= 0) this.sessions.splice(i, 1);
    if (session.connected) this.options.events.onConnectionClose();
    // A waiting request may now open a fresh session, in a drained pool too (see sessionWithCapacity).
    if (this.waiting.length > 0) {
      const next = this.sessionWithCapacity();
      if (next !== null) this.pump(next);
    }
  }

  drain(): void {
    this.draining = true;
    for (const session of this.sessions.slice()) {
      session.closing = true;
      if (session.active === 0) session.h2.close();
    }
  }

  destroy(): void {
    this.draining = true;
    const waiting = this.waiting.splice(0);
    for (const req of waiting) {
      this.options.pending.remove();
      req.finished = true;
      req.sink.onUpstreamError(new Error('connection pool closed'), true);
    }
    for (const session of this.sessions.slice()) {
      session.closing = true;
      session.h2.destroy(H2Error.CANCEL, 'the connection pool was closed');
    }
  }

  private sessionWithCapacity(): Session | null {
    for (const session of this.sessions) if (session.hasCapacity) return session;
    // A drained pool takes no new requests, but those it queued before the drain are still its to send: its
    // sessions take no new streams, so without a fresh one they would wait for the route timeout, or for ever.
    // maxConnections, but at least one, as Envoy: max_connections 0 must not queue every request for ever.
    if ((this.draining && this.waiting.length === 0) || this.sessions.length >= Math.max(1, this.options.maxConnections)) return null;
    return this.open();
  }

  private start(req: H2Request, session: Session): void {
    const spec = req.spec;
    req.session = session;
    req.released = false;
    session.active++;
    const body = spec.body as BodyOf | null;
    req.localEnded = body === null;
    let stream: H2Stream;
    try {
      stream = session.h2.request(spec.method, spec.scheme, spec.authority, spec.path, spec.headers, body === null, req);
    } catch (err) {
      // The session ended between the capacity check and now (GOAWAY or socket error in the same turn).
      req.released = true;
      session.active--;
      session.closing = true;
      req.finished = true;
      req.sink.onUpstreamError(err as Error, !session.connected);
      return;
    }
    req.stream = stream;
    if (body !== null) req.attachBody(body);
  }

  private open(): Session {
    const tls = this.options.tls ?? null;
    const socket = (
      tls === null
        ? net.connect({ host: this.host, port: this.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 })
        : tls.connect(this.host, this.port, ALPN_H2, null)
    ) as SocketOf;
    const session = new Session(this, socket);
    this.sessions.push(session);
    const connectTimeoutMs = this.options.connectTimeoutMs;
    if (connectTimeoutMs > 0) {
      session.connectTimer = setTimeout(onConnectTimeout, connectTimeoutMs, session, connectTimeoutMs);
      session.connectTimer.unref();
    }
    session.idleTimer = setInterval(checkIdle, IDLE_CHECK_MS, session);
    session.idleTimer.unref();
    // As Node's http2 sessions were: a pooled connection does not keep the process alive.
    socket.unref();
    return session;
  }
}
