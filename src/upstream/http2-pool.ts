// HTTP/2 (cleartext, prior knowledge) connection pool for one endpoint: one multiplexed session, more when the
// peer's SETTINGS_MAX_CONCURRENT_STREAMS is reached, and a FIFO of requests waiting for stream capacity.
import * as http2 from 'node:http2';
import { addAbortSignal, type Readable } from 'node:stream';
import { pendingOverflowError, REFUSED_STREAM, type ConnectionPool, type PoolOptions, type UpstreamRequestSpec, type UpstreamSink, type UpstreamStream } from './pool.js';
import { headersFromH2, type HeaderMap } from '../http/headers.js';
import { ResetBudget } from './reset-budget.js';
import { openStream } from './h2-request.js';
import { nghttp2Finished } from '../http/nghttp2-finished.js';
import { ALPN_H2, isTlsPolicyError } from '../tls/upstream-tls.js';

/** A URL's host as a socket address (IPv6 without its brackets). */
function hostOf(url: URL): string {
  const h = url.hostname;
  return h.startsWith('[') ? h.slice(1, -1) : h;
}

const { NGHTTP2_NO_ERROR } = http2.constants;
/** Assumed until the peer's SETTINGS arrive (RFC 9113 recommends at least 100). */
const INITIAL_STREAM_LIMIT = 100;
const IDLE_SESSION_TIMEOUT_MS = 60_000;
/** How often a cancel that the reset budget held back is tried again (the stream may also finish first). */
const DEFERRED_RESET_RETRY_MS = 1_000;
/**
 * How often a session is checked for one nghttp2 has ended without Node telling (see nghttp2Finished): its
 * streams would otherwise wait for the route timeout (or for ever), and new ones would be sent to it. One native
 * call per session per tick; a request also checks the session it is about to use.
 */
const SESSION_CHECK_MS = 250;
const kRequest = Symbol('pillion.h2request');
/**
 * The connection-level receive window (RFC 9113's default, 65,535 bytes, is shared by every stream of the
 * connection: a few busy gRPC streams stall on it). Each stream keeps its own 64 KiB window, so this bounds what
 * one connection can buffer, not what one stream can.
 */
export const CONNECTION_WINDOW_BYTES = 1 << 20;
/**
 * Already aborted: addAbortSignal(CANCELLED, stream) destroys the stream with an AbortError, which Node sends as
 * RST_STREAM CANCEL alone. Not close(NGHTTP2_CANCEL): close() ends the writable side first, so a request whose
 * body was still coming reached the upstream as complete (END_STREAM, the body truncated), then the reset.
 */
const CANCELLED = AbortSignal.abort();

type StreamWithRequest = http2.ClientHttp2Stream & { [kRequest]: H2Request };
type BodyWithRequest = Readable & { [kRequest]?: H2Request };

class Session {
  active = 0;
  maxStreams = INITIAL_STREAM_LIMIT;
  connected = false;
  closing = false;
  connectTimer: NodeJS.Timeout | null = null;
  checkTimer: NodeJS.Timeout | null = null;
  readonly resets = new ResetBudget(performance.now());
  /** Why the session failed (a TLS refusal is answered with its own reason). */
  error: Error | null = null;

  constructor(readonly h2: http2.ClientHttp2Session) {}

  get hasCapacity(): boolean {
    return !this.closing && this.active < this.maxStreams;
  }
}

/** One request in flight: the stream's listeners are shared functions that find it through a symbol. */
class H2Request implements UpstreamStream {
  stream: StreamWithRequest | null = null;
  trailers: HeaderMap | null = null;
  error: Error | null = null;
  finished = false;
  aborted = false;

  constructor(
    readonly pool: Http2Pool,
    readonly spec: UpstreamRequestSpec,
    readonly sink: UpstreamSink,
    public session: Session | null,
  ) {}

  resume(): void {
    this.stream?.resume();
  }

  abort(): void {
    if (this.finished) return;
    this.aborted = true;
    this.finished = true;
    if (this.stream !== null) this.pool.cancel(this, this.stream);
    else this.pool.cancelWaiting(this);
  }
}

function checkSession(pool: Http2Pool, session: Session): void {
  if (!session.h2.destroyed && nghttp2Finished(session.h2)) pool.retire(session);
}

/** A cancel the reset budget held back: reset now if the budget allows, else later (unless it finished). */
function retryDeferredReset(req: H2Request): void {
  const stream = req.stream;
  if (stream === null || stream.closed) return;
  req.pool.cancel(req, stream);
}

function onResponse(this: StreamWithRequest, headers: http2.IncomingHttpHeaders, flags: number): void {
  const req = this[kRequest];
  if (req.finished) return;
  const status = Number(headers[':status']);
  req.sink.onUpstreamHeaders(status, headersFromH2(headers), (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0);
}

function onData(this: StreamWithRequest, chunk: Buffer): void {
  const req = this[kRequest];
  if (req.finished) return;
  if (!req.sink.onUpstreamData(chunk)) this.pause();
}

function onRequestBodyData(this: BodyWithRequest, chunk: Buffer): void {
  const req = this[kRequest];
  if (req !== undefined && !req.finished) req.sink.onRequestBodyBytes(chunk.length);
}

function onTrailers(this: StreamWithRequest, headers: http2.IncomingHttpHeaders): void {
  this[kRequest].trailers = headersFromH2(headers);
}

function onEnd(this: StreamWithRequest): void {
  const req = this[kRequest];
  if (req.finished) return;
  // Node also emits 'end' on a stream whose session died under it (the upstream closed the connection, FIN
  // without GOAWAY): the stream is destroyed by then, with rstCode CANCEL. A real END_STREAM comes while the
  // stream is still alive (Node destroys it only after this 'end'). Not the end of the response, then: 'close'
  // follows and reports it as the reset it is.
  if (this.destroyed || this.rstCode !== NGHTTP2_NO_ERROR) {
    req.error ??= new Error(`the upstream connection closed before the stream ended (HTTP/2 error code ${this.rstCode})`);
    return;
  }
  req.finished = true;
  req.sink.onUpstreamEnd(req.trailers);
}

function onStreamError(this: StreamWithRequest, err: Error): void {
  this[kRequest].error = err;
}

function onStreamClose(this: StreamWithRequest): void {
  const req = this[kRequest];
  const session = req.session!;
  session.active--;
  req.pool.streamClosed(session);
  if (req.finished) return;
  req.finished = true;
  const err = (isTlsPolicyError(session.error) ? session.error : req.error) ?? new Error(`upstream reset the stream (HTTP/2 error code ${this.rstCode})`);
  req.sink.onUpstreamError(err, !session.connected);
}

export class Http2Pool implements ConnectionPool {
  private readonly sessions: Session[] = [];
  private readonly waiting: H2Request[] = [];
  private draining = false;

  constructor(
    private readonly origin: string,
    private readonly options: PoolOptions,
  ) {}

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
    const session = this.sessionWithCapacity();
    const req = new H2Request(this, spec, sink, null);
    if (session !== null) {
      this.start(req, session);
      return req;
    }
    const pending = this.options.pending;
    if (!pending.tryAdd()) {
      this.options.events.onPendingOverflow();
      sink.onUpstreamError(pendingOverflowError(pending.max), false);
      return REFUSED_STREAM;
    }
    this.waiting.push(req);
    return req;
  }

  /**
   * Cancels a stream in flight with RST_STREAM while the connection's reset budget allows. Past it, the stream
   * is left to finish and its response read and dropped (the upstream does the work no one waits for, the
   * price of not being taken for a flood), the connection takes no new streams (a fresh one does), and the
   * reset is retried later for streams that never finish.
   */
  cancel(req: H2Request, stream: StreamWithRequest): void {
    const session = req.session!;
    // No more of the request body, and above all not its end: a cancelled request must never look complete.
    req.spec.body?.unpipe(stream);
    if (session.resets.tryTake(performance.now())) {
      addAbortSignal(CANCELLED, stream);
      return;
    }
    if (!session.closing) {
      session.closing = true;
      this.options.events.onResetDeferred();
    }
    stream.resume();
    setTimeout(retryDeferredReset, DEFERRED_RESET_RETRY_MS, req).unref();
  }

  cancelWaiting(req: H2Request): void {
    const i = this.waiting.indexOf(req);
    if (i < 0) return;
    this.waiting.splice(i, 1);
    this.options.pending.remove();
  }

  streamClosed(session: Session): void {
    while (this.waiting.length > 0 && session.hasCapacity) {
      this.options.pending.remove();
      this.start(this.waiting.shift()!, session);
    }
    if (session.active === 0 && (this.draining || session.closing)) session.h2.close();
  }

  drain(): void {
    this.draining = true;
    for (const session of this.sessions) {
      session.closing = true;
      if (session.active === 0) session.h2.close();
    }
  }

  destroy(): void {
    this.draining = true;
    const waiting = this.waiting.splice(0);
    for (const req of waiting) {
      this.options.pending.remove();
      req.sink.onUpstreamError(new Error('connection pool closed'), true);
    }
    for (const session of this.sessions) session.h2.destroy();
  }

  /**
   * A session nghttp2 has ended (it sent GOAWAY for something the upstream sent: a header block it cannot
   * decode, a flood) but Node keeps open and silent: destroyed, so its streams fail now (503 upstream_reset, or
   * the client's stream reset mid-response) and new requests go to a fresh session.
   */
  retire(session: Session): void {
    session.closing = true;
    session.h2.destroy(new Error('the upstream HTTP/2 connection was ended by a protocol error (GOAWAY sent)'));
  }

  private sessionWithCapacity(): Session | null {
    for (const session of this.sessions) {
      if (!session.hasCapacity) continue;
      if (!nghttp2Finished(session.h2)) return session;
      this.retire(session);
    }
    if (this.draining || this.sessions.length >= this.options.maxConnections) return null;
    return this.open();
  }

  private start(req: H2Request, session: Session): void {
    const spec = req.spec;
    req.session = session;
    session.active++;
    const headers: http2.OutgoingHttpHeaders = spec.headers;
    headers[':method'] = spec.method;
    headers[':path'] = spec.path;
    headers[':authority'] = spec.authority;
    headers[':scheme'] = spec.scheme;
    let stream: StreamWithRequest;
    try {
      stream = openStream(session.h2, headers, spec.body === null) as StreamWithRequest;
    } catch (err) {
      // The session died between the capacity check and now (GOAWAY or socket error in the same tick).
      session.active--;
      session.closing = true;
      req.finished = true;
      req.sink.onUpstreamError(err as Error, !session.connected);
      return;
    }
    stream[kRequest] = req;
    req.stream = stream;
    stream.on('response', onResponse);
    stream.on('data', onData);
    stream.on('trailers', onTrailers);
    stream.on('end', onEnd);
    stream.on('error', onStreamError);
    stream.on('close', onStreamClose);
    if (spec.body !== null) {
      spec.body.pipe(stream);
      // Listening after pipe() only observes: the body is already flowing into the stream.
      (spec.body as BodyWithRequest)[kRequest] = req;
      spec.body.on('data', onRequestBodyData);
    }
  }

  private open(): Session {
    const tls = this.options.tls ?? null;
    const h2 =
      tls === null
        ? http2.connect(this.origin, { settings: { enablePush: false } })
        : http2.connect(this.origin, { settings: { enablePush: false }, createConnection: (url: URL) => tls.connect(hostOf(url), Number(url.port), ALPN_H2, null) });
    const session = new Session(h2);
    this.sessions.push(session);
    session.checkTimer = setInterval(checkSession, SESSION_CHECK_MS, this, session);
    session.checkTimer.unref();
    const { events, connectTimeoutMs } = this.options;
    if (connectTimeoutMs > 0) {
      session.connectTimer = setTimeout(() => {
        const err = Object.assign(new Error(`connect timeout after ${connectTimeoutMs} ms`), { code: 'ETIMEDOUT' });
        h2.destroy(err);
      }, connectTimeoutMs);
    }
    h2.on('connect', () => {
      session.connected = true;
      h2.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
      if (session.connectTimer !== null) clearTimeout(session.connectTimer);
      events.onConnectionOpen();
    });
    h2.on('remoteSettings', (settings) => {
      session.maxStreams = settings.maxConcurrentStreams ?? INITIAL_STREAM_LIMIT;
      this.streamClosed(session);
    });
    h2.on('goaway', () => {
      session.closing = true;
    });
    h2.on('error', (err: Error) => {
      // Streams learn of it through their own 'close'; the session is dropped on 'close'.
      session.closing = true;
      session.error ??= err;
    });
    h2.setTimeout(IDLE_SESSION_TIMEOUT_MS, () => {
      if (session.active === 0) h2.close();
    });
    h2.on('close', () => {
      if (session.connectTimer !== null) clearTimeout(session.connectTimer);
      if (session.checkTimer !== null) clearInterval(session.checkTimer);
      session.closing = true;
      const i = this.sessions.indexOf(session);
      if (i >= 0) this.sessions.splice(i, 1);
      if (session.connected) events.onConnectionClose();
      // A waiting request may now open a fresh session.
      if (this.waiting.length > 0 && !this.draining) {
        const next = this.sessionWithCapacity();
        if (next !== null) this.streamClosed(next);
      }
    });
    h2.unref();
    return session;
  }
}
