// HTTP/1.1 connection pool for one endpoint: keep-alive connections on raw sockets (one request at a time each,
// responses read by Node's own parser), a cap on idle connections, and a FIFO of requests waiting for a free
// connection. Socket, parser and body events reach the connection through shared functions and a symbol, so a
// request allocates no closures.
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import { IDEMPOTENT, pendingOverflowError, REFUSED_STREAM, requestTrailersOf, UPSTREAM_UNSEEN, type ConnectionPool, type PoolOptions, type UpstreamRequestSpec, type UpstreamSink, type UpstreamStream } from './pool.js';
import { HOP_BY_HOP } from '../http/headers.js';
import { ALPN_HTTP11 } from '../tls/upstream-tls.js';
import {
  CRLF,
  lastChunkWithTrailers,
  PAUSE,
  PAUSED,
  PendingHead,
  SKIP_BODY,
  chunkHeader,
  consumeSocket,
  createParser,
  resetParser,
  setMessageBegin,
  unconsumeSocket,
  pauseReading,
  resumeReading,
  headerMapFromFlat,
  HeaderNames,
  headerNameIs,
  isParseError,
  releaseParser,
  serializeHeaders,
  type FlatHeaders,
  type NativeParser,
  type ParseError,
  type ParserOwner,
} from '../http/h1-parser.js';
import { canReadRaw, giveReadBuffer, installRawRead, LARGE_READ_BYTES, SMALL_READ_BYTES, takeReadBuffer } from '../tcp/raw-read.js';
import { rawBodyStats } from './raw-body-stats.js';
import { writeLatin1 } from '../tcp/direct-write.js';
import { coarseClock, coarseNow, startCoarseClock, unrefTimer } from '../tcp/coarse-clock.js';

const kConnection = Symbol('pillion.h1connection');
/** Response heads' names, remembered across responses and connections (see HeaderNames). */
const RESPONSE_NAMES = new HeaderNames(HOP_BY_HOP);
type SocketOf = net.Socket & { [kConnection]: H1Connection };
type BodyOf = Readable & { [kConnection]?: H1Connection };

/**
 * Idle connections close after this long, or 1 s before the server's own `Keep-Alive: timeout=N` (at most
 * MAX_KEEP_ALIVE_MS): reusing a socket the server is about to close is the classic cause of spurious 503s (undici
 * and Node's agent do the same). A peer sidecar's inbound says `timeout=3600`.
 */
const DEFAULT_KEEP_ALIVE_MS = 4_000;

function unseenError(): Error {
  return Object.assign(new Error('the upstream closed a reused connection as the request went out'), { code: UPSTREAM_UNSEEN });
}

/** An HPE_ code, so the exchange answers 502 upstream_protocol_error as for what llhttp itself refuses. */
function unsolicitedUpgrade(): Error {
  return Object.assign(new Error('upstream answered 101 Switching Protocols to a request that asked for no upgrade'), {
    code: 'HPE_UNEXPECTED_UPGRADE',
  });
}
/**
 * Response bodies with a content-length of at least this skip the parser on plaintext connections (see
 * readRawBody). Switching costs a copy of the head's read, a parser reset and a reader swap: in A/B runs the raw
 * path took ~15 % more CPU per MB than the parser's at 64 KiB bodies (one or two reads), about the same at
 * 96 KiB, and less from 128 KiB up.
 */
export const RAW_BODY_MIN_BYTES = 128 * 1024;
/**
 * Raw reads shorter than this (a slow upstream) are passed on as a copy, as the parser would: the client's
 * HTTP/1 connection gathers chunks this short into one write at the end of the loop turn, and a chunk waiting
 * there would cost a new 64 KiB read buffer each time. Matches h1-connection's DIRECT_WRITE_BYTES.
 */
const RAW_COPY_BELOW = 32 * 1024;
/**
 * Where Node's user-buffer reader points between raw bodies. Once installed it stays on the socket's handle,
 * under the parser, and its next read goes into the buffer it was given last: this shared one, so that a
 * connection's 64 KiB buffer goes back to the pool when its body ends instead of staying with an idle
 * connection. The first read of the next raw body lands here and is copied out at once (reads are synchronous
 * callbacks, so no two connections' bytes can meet in it).
 */
const PARKING = Buffer.allocUnsafeSlow(SMALL_READ_BYTES);

const KEEP_ALIVE_MARGIN_MS = 1_000;
/**
 * A request cancelled after it was sent in full because its client went away: its connection reads the
 * rest of the response for up to this long and this many body bytes, discarding it, and goes back to the pool if
 * the response ends in time. Closing it instead costs a new connection, and to a peer sidecar a new mTLS
 * handshake: when a load balancer or a batch of clients drops its connections, one for each request in flight.
 * A try cancelled for a timeout or as the losing hedge still closes its connection at once: the upstream is
 * slow, and the close is how it learns to stop working on the request.
 */
export const ABORT_DISCARD_MS = 1_000;
export const ABORT_DISCARD_MAX_BYTES = 64 * 1024;
/** The longest a server's Keep-Alive hint keeps an idle connection here (undici's maxKeepAliveTimeout). */
const MAX_KEEP_ALIVE_MS = 600_000;

/** One upstream connection, and the handle of the request it carries now (the pool hands it to the sink). */
class H1Connection implements UpstreamStream, ParserOwner {
  sink: UpstreamSink | null = null;
  readonly socket: SocketOf;
  private readonly parser: NativeParser;
  /** TLS: writes go through the socket (see direct-write.ts). */
  private readonly encrypted: boolean;
  connected = false;
  closed = false;
  private error: Error | null = null;
  private connectTimer: NodeJS.Timeout | null = null;
  private keepAliveMs = DEFAULT_KEEP_ALIVE_MS;
  /**
   * The keep-alive idle timer: one timer that checks lastActivityMs when it fires and re-arms for what is left
   * (onIdleCheck), instead of a socket timeout refreshed on every read and write (see coarse-clock.ts).
   */
  private idleTimer: NodeJS.Timeout | null = null;
  /** coarseClock time of the last read, or of the connection becoming free. */
  private lastActivityMs = 0;
  /** The last Keep-Alive header value seen here, and the idle time it gave (NaN: none). */
  private hintValue = '';
  private hintMs = Number.NaN;
  /** Reading stopped for backpressure; a response can end while paused, so the next request resumes it. */
  private paused = false;

  // State of the request in flight.
  private body: BodyOf | null = null;
  private chunkedBody = false;
  private requestWritten = false;
  private skipBody = false;
  private informational = false;
  private reusable = true;
  /** The response is complete; the pool gets the connection back once the rest of this read is parsed. */
  private releasePending = false;
  /** The upstream sent bytes no request asked for: the byte stream is out of step, so it is not reused. */
  private unsolicited = false;
  /** Header lines the parser hands over early (more than 32 lines) and trailer lines. */
  private readonly pendingHead = new PendingHead();
  /** The request in flight, kept until its response completes so it can be replayed (see onClose). */
  private spec: UpstreamRequestSpec | null = null;
  /** Final responses this connection carried: more than none means it is a reused keep-alive connection. */
  private served = 0;
  /** A byte of the response to the request in flight has arrived: the upstream saw the request. */
  private responseStarted = false;
  /** The request in flight is itself a replay: it is not replayed again. */
  private replay = false;
  /** Where the request went when it was replayed: the sink's handle on this connection steers that one. */
  private replacement: UpstreamStream | null = null;
  /** The request was cancelled after it was sent: its response is read and dropped (see ABORT_DISCARD_MS). */
  private discarding = false;
  private discardedBytes = 0;
  private discardTimer: NodeJS.Timeout | null = null;
  /** Bytes of the response body still to come while it is read around the parser (readRawBody); else 0. */
  private rawLeft = 0;
  /** The buffer of this connection's raw body in flight (null between raw bodies: reads go to PARKING). */
  rawBuffer: Buffer | null = null;
  /** Node's user-buffer reader is on the socket's handle (installed at the first raw body). */
  private rawReader = false;
  /** The socket can be read raw (canReadRaw: plaintext, native handle), known once connected. */
  private rawCapable = false;

  constructor(
    readonly pool: Http1Pool,
    host: string,
    port: number,
  ) {
    const tls = pool.options.tls ?? null;
    const options = { host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 };
    const socket = (tls === null ? net.connect(options) : tls.connect(host, port, ALPN_HTTP11, options)) as SocketOf;
    socket[kConnection] = this;
    this.socket = socket;
    this.encrypted = tls !== null;
    // Over TLS the connection is usable once the handshake and the peer's identity check are done.
    socket.on(tls === null ? 'connect' : 'secureConnect', onSocketConnect);
    socket.on('end', onSocketEnd);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    socket.on('drain', onSocketDrain);
    startCoarseClock();
    this.lastActivityMs = coarseClock.nowMs;
    this.idleTimer = unrefTimer(onIdleCheck, this.keepAliveMs, this);
    const connectTimeoutMs = pool.options.connectTimeoutMs;
    if (connectTimeoutMs > 0) this.connectTimer = setTimeout(onConnectTimeout, connectTimeoutMs, this, connectTimeoutMs);

    // Idle until start(): a byte before any request is unsolicited (see onMessageBegin).
    this.parser = createParser('response', 0, this, true);
  }

  start(spec: UpstreamRequestSpec, sink: UpstreamSink, replay = false): void {
    this.sink = sink;
    this.spec = spec;
    this.responseStarted = false;
    // Until its response ends, a message's start is this request's response: onExecute notes it (see onMessageBegin).
    setMessageBegin(this.parser, false);
    this.replay = replay;
    if (this.paused) this.resume();
    this.skipBody = spec.method === 'HEAD';
    this.informational = false;
    this.reusable = true;
    const headers = spec.headers;
    let head = serializeHeaders(spec.method + ' ' + spec.path + ' HTTP/1.1\r\nhost: ' + spec.authority + '\r\n', headers);
    const body = spec.body as BodyOf | null;
    if (body === null) {
      this.requestWritten = true;
      writeLatin1(this.socket, head + CRLF, this.encrypted);
      return;
    }
    this.requestWritten = false;
    // A body of unknown length (HTTP/1 chunked or HTTP/2 without content-length) goes chunked.
    this.chunkedBody = headers['content-length'] === undefined;
    if (this.chunkedBody) head += 'transfer-encoding: chunked\r\n';
    this.socket.write(head + CRLF, 'latin1');
    this.body = body;
    body[kConnection] = this;
    body.on('data', onBodyData);
    body.on('end', onBodyEnd);
  }

  writeBody(chunk: Buffer): void {
    if (chunk.length === 0) return; // a zero-size chunk would end a chunked body
    this.sink?.onRequestBodyBytes(chunk.length);
    const socket = this.socket;
    let flushed: boolean;
    if (this.chunkedBody) {
      socket.cork();
      socket.write(chunkHeader(chunk.length), 'latin1');
      socket.write(chunk);
      flushed = socket.write(CRLF, 'latin1');
      socket.uncork();
    } else {
      flushed = socket.write(chunk);
    }
    if (!flushed) this.body!.pause();
  }

  endBody(): void {
    // Request trailers need chunked framing: a body sent with its content-length drops them (as Envoy's does).
    if (this.chunkedBody) this.socket.write(lastChunkWithTrailers(requestTrailersOf(this.body!)), 'latin1');
    this.requestWritten = true;
    this.detachBody();
  }

  resumeBody(): void {
    this.body?.resume();
  }

  private detachBody(): void {
    const body = this.body;
    if (body === null) return;
    this.body = null;
    body.off('data', onBodyData);
    body.off('end', onBodyEnd);
    body[kConnection] = undefined;
  }

  // --- parser events ---

  onHeaderLines(lines: FlatHeaders, url: string): void {
    this.pendingHead.add(lines, url);
  }

  onHeadersComplete(
    _major: number,
    _minor: number,
    givenLines: FlatHeaders | undefined,
    _method: number,
    _url: string | undefined,
    status: number,
    _upgrade: boolean,
    shouldKeepAlive: boolean,
  ): number {
    const lines = this.pendingHead.takeLines(givenLines);
    const sink = this.sink;
    if (sink !== null) this.responseStarted = true;
    if (sink === null) return this.discarding ? this.discardHeaders(status, shouldKeepAlive, lines) : SKIP_BODY;
    // Requests on a pooled connection never ask for an upgrade (Upgrade and CONNECT go their own way): a 101 is
    // the upstream leaving HTTP, and what follows is not a response. 502, not a wait for the route timeout.
    if (status === 101) {
      this.fail(unsolicitedUpgrade());
      return SKIP_BODY;
    }
    // 1xx (100 Continue, 103 Early Hints): the proxy answered 100-continue itself; the final response follows.
    if (status < 200) {
      this.informational = true;
      return SKIP_BODY;
    }
    const headers = RESPONSE_NAMES.map(lines);
    if (!shouldKeepAlive) this.reusable = false;
    else if (RESPONSE_NAMES.keepAliveAt >= 0) this.readKeepAliveHint(lines[RESPONSE_NAMES.keepAliveAt + 1]!);
    // A large body of known length is read around the parser, once the head's read is parsed (onExecute). Not
    // when the sink lets go of this connection in onUpstreamHeaders (a retried status), nor for 204/304 (no body
    // whatever content-length says), nor over TLS. Read before the sink's turn: RESPONSE_NAMES notes this head's.
    const rawLength = this.rawCapable && !this.skipBody && status !== 204 && status !== 304 ? RESPONSE_NAMES.contentLength(lines) : -1;
    sink.onUpstreamHeaders(status, headers, false);
    if (this.skipBody) return SKIP_BODY;
    if (rawLength >= RAW_BODY_MIN_BYTES && this.sink === sink && !this.closed) {
      this.rawLeft = rawLength;
      return PAUSE;
    }
    return 0;
  }

  onBody(chunk: Buffer): void {
    const sink = this.sink;
    if (sink === null) {
      if (this.discarding && (this.discardedBytes += chunk.length) > ABORT_DISCARD_MAX_BYTES) this.close();
      return;
    }
    if (!sink.onUpstreamData(chunk)) {
      this.paused = true;
      pauseReading(this.socket);
    }
  }

  onMessageComplete(): void {
    // Most responses have no trailer lines: no empty array in their place (takeLines makes one).
    const pending = this.pendingHead;
    const trailerLines = pending.lines.length === 0 ? null : pending.takeLines(undefined);
    pending.clear();
    if (this.informational) {
      this.informational = false;
      return;
    }
    const sink = this.sink;
    if (sink === null) {
      if (this.discarding) this.discarded();
      return;
    }
    this.sink = null;
    const trailers = trailerLines === null ? null : headerMapFromFlat(trailerLines, HOP_BY_HOP);
    // A response that ends before its request was fully sent leaves the connection mid-message: not reusable.
    if (!this.requestWritten) {
      this.reusable = false;
      this.detachBody();
    }
    this.responseEnded();
    sink.onUpstreamEnd(trailers);
  }

  /** The response to the request in flight is complete (delivered or discarded). */
  private responseEnded(): void {
    // Released after the read is parsed, not here: bytes after this response in the same read must not be
    // taken for the answer to a request the pool would start on this connection now (a response desync).
    this.spec = null;
    this.served++;
    // Free from now: the keep-alive idle time counts from here.
    this.lastActivityMs = coarseClock.nowMs;
    // Idle again: any message that starts now (in the rest of this read, or later) answers no request.
    setMessageBegin(this.parser, true);
    if (this.reusable) this.releasePending = true;
    else this.close();
  }

  /**
   * Registered only while no request is in flight (from construction and each response's end to the next
   * start()): bytes then are unsolicited. With a request in flight, its response's first bytes are noted by
   * onExecute (after each read) and onHeadersComplete instead: one C++ → JS call per response less.
   */
  onMessageBegin(): void {
    if (this.sink !== null) this.responseStarted = true;
    else if (!this.discarding) this.unsolicited = true;
  }

  /** The head of a response nobody waits for any more: read on only if the connection can be reused after it. */
  private discardHeaders(status: number, shouldKeepAlive: boolean, lines: FlatHeaders): number {
    if (status === 101 || !shouldKeepAlive) {
      this.close();
      return SKIP_BODY;
    }
    if (status < 200) {
      this.informational = true;
      return SKIP_BODY;
    }
    const value = firstKeepAlive(lines);
    if (value !== undefined) this.readKeepAliveHint(value);
    return this.skipBody ? SKIP_BODY : 0;
  }

  /** The cancelled request's response ended within the bounds: the connection is reusable as after any response. */
  private discarded(): void {
    this.stopDiscarding();
    this.responseEnded();
  }

  private stopDiscarding(): void {
    this.discarding = false;
    if (this.discardTimer !== null) {
      clearTimeout(this.discardTimer);
      this.discardTimer = null;
    }
  }

  /** ABORT_DISCARD_MS passed and the cancelled request's response has not ended: the connection goes. */
  onDiscardTimeout(): void {
    this.discardTimer = null;
    if (this.discarding) this.close();
  }

  /** A server's `Keep-Alive` hint (the value of the head's first keep-alive line): how long it keeps us idle. */
  private readKeepAliveHint(value: string): void {
    // A server sends the same hint on every response: parsed once per connection, not per response.
    let hintMs: number;
    if (value === this.hintValue) hintMs = this.hintMs;
    else {
      const at = value.indexOf('timeout=');
      hintMs = at < 0 ? Number.NaN : Math.min(MAX_KEEP_ALIVE_MS, Math.max(0, Number.parseInt(value.slice(at + 8), 10) * 1000 - KEEP_ALIVE_MARGIN_MS));
      this.hintValue = value;
      this.hintMs = hintMs;
    }
    if (Number.isNaN(hintMs)) return;
    if (hintMs === 0) this.reusable = false;
    else if (hintMs !== this.keepAliveMs) {
      // Shorter or longer than the default: the server said how long it keeps an idle connection (as undici).
      this.keepAliveMs = hintMs;
      this.clearIdleTimer();
      this.idleTimer = unrefTimer(onIdleCheck, hintMs, this);
    }
  }

  // --- socket events ---

  onConnect(): void {
    this.connected = true;
    this.clearConnectTimer();
    if (!consumeSocket(this.parser, this.socket)) this.socket.destroy(new Error('upstream socket has no stream handle'));
    // Per connection, not per response: neither the socket's kind nor its handle changes.
    else this.rawCapable = canReadRaw(this.socket);
    this.pool.options.events.onConnectionOpen();
  }

  /** After each read the parser took from the socket. */
  onExecute(ret: number | ParseError): void {
    this.lastActivityMs = coarseClock.nowMs;
    // Bytes read while a request is in flight (a response not complete in this read): the upstream saw it.
    if (this.sink !== null) this.responseStarted = true;
    if (isParseError(ret)) {
      if (ret.code === PAUSED && this.rawLeft > 0 && !this.closed) this.readRawBody(ret.bytesParsed);
      else this.fail(ret);
      return;
    }
    this.afterResponse();
  }

  /** After a read's bytes were parsed, or a raw body ended: the connection goes back to the pool, or closes. */
  private afterResponse(): void {
    if (!this.releasePending) {
      if (this.unsolicited) this.close();
      return;
    }
    this.releasePending = false;
    if (this.unsolicited || this.closed) this.close();
    else this.pool.release(this);
  }

  /**
   * The head just parsed announced a large body (rawLeft bytes): the parser stops reading the socket, and the
   * body goes from socket reads into a reused buffer straight to the sink, as the TCP pump moves bytes. Node's
   * parser would copy each chunk into a Buffer of its own, whose external memory drives V8's mark-compacts (a
   * full GC every ~90 ms at 1 MiB bodies). Once the body is complete the parser reads again, from a fresh start.
   */
  private readRawBody(headBytes: number): void {
    // The rest of the head's read is body: a copy of that read is all the parser can give back.
    const read = this.parser.getCurrentBuffer();
    unconsumeSocket(this.parser);
    rawBodyStats.responses++;
    this.rawBuffer = takeReadBuffer(LARGE_READ_BYTES);
    if (!this.rawReader) {
      this.rawReader = true;
      installRawRead(this.socket, PARKING, onRawRead, nextRawBuffer);
    }
    const rest = read.length - headBytes;
    if (rest > 0 && !this.rawData(read.subarray(headBytes), rest)) pauseReading(this.socket);
  }

  /** `nread` body bytes read raw into `buf`: false stops reading (Node's readStop) until resume(). */
  onRawRead(nread: number, buf: Buffer): boolean {
    if (this.rawLeft === 0 || this.closed) return false;
    return this.rawData(buf, nread);
  }

  private rawData(buf: Buffer, nread: number): boolean {
    const sink = this.sink;
    if (sink === null) return false;
    const take = nread < this.rawLeft ? nread : this.rawLeft;
    this.rawLeft -= take;
    rawBodyStats.bytes += take;
    let chunk = take === buf.length ? buf : buf.subarray(0, take);
    // Lent: the connection's own buffer. The head read's copy is the sink's to keep; PARKING is shared.
    let lent = buf === this.rawBuffer;
    if (buf === PARKING || (lent && take < RAW_COPY_BELOW)) {
      chunk = Buffer.from(chunk);
      lent = false;
    }
    const flowing = sink.onUpstreamData(chunk);
    // A write the kernel did not take whole still refers to buf: the next read goes to another buffer.
    if (lent && !sink.dataReleased()) this.rawBuffer = takeReadBuffer(LARGE_READ_BYTES);
    if (this.closed) return false;
    if (this.rawLeft > 0) {
      if (!flowing) this.paused = true;
      return flowing;
    }
    // The body is complete: its buffer goes back to the pool (nothing refers to it: see above) and the reader is
    // left PARKING (nextRawBuffer). Bytes after the body are an answer to no request: the connection is out of step.
    if (this.rawBuffer !== null) {
      giveReadBuffer(this.rawBuffer);
      this.rawBuffer = null;
    }
    resetParser(this.parser);
    if (nread > take) this.unsolicited = true;
    else consumeSocket(this.parser, this.socket);
    this.paused = false;
    this.onMessageComplete();
    this.afterResponse();
    return !this.closed;
  }

  /** The server closed its side: that ends a close-delimited body, and anything else still in flight. */
  onEnd(): void {
    const ret = this.parser.finish();
    if (isParseError(ret)) this.fail(ret);
    this.close();
  }

  onError(err: Error): void {
    this.error ??= err;
  }

  /**
   * The idle timer fired: a connection free for keepAliveMs since its last read closes. Only an idle connection
   * times out here; a slow response is the exchange's timeout to enforce. Stamps run up to COARSE_TICK_MS behind
   * (the close may come that much early): the safe side of the server's own Keep-Alive timeout.
   */
  onIdleCheck(): void {
    this.idleTimer = null;
    if (this.closed) return;
    const idle = this.sink === null ? coarseNow() - this.lastActivityMs : 0;
    if (idle < this.keepAliveMs) this.idleTimer = unrefTimer(onIdleCheck, this.keepAliveMs - idle, this);
    else this.close();
  }

  private clearIdleTimer(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  private fail(err: Error): void {
    this.error ??= err;
    const sink = this.sink;
    this.sink = null;
    this.close();
    if (sink !== null) sink.onUpstreamError(err, !this.connected);
  }

  /** The socket is gone (or going): report a request still in flight and give the pool its slot back. */
  onClose(): void {
    this.clearConnectTimer();
    // The handle is closed: no read goes into the raw buffer any more.
    if (this.rawBuffer !== null) {
      giveReadBuffer(this.rawBuffer);
      this.rawBuffer = null;
    }
    const sink = this.sink;
    this.sink = null;
    const wasConnected = this.connected;
    this.close();
    if (wasConnected) this.pool.options.events.onConnectionClose();
    if (sink !== null && this.replayable(wasConnected)) {
      const spec = this.spec!;
      this.spec = null;
      if (spec.body !== null) {
        // A body stream already flowing upstream cannot be sent again from here: the router may hold it whole.
        sink.onUpstreamError(unseenError(), false);
        return;
      }
      // The keep-alive race: the upstream closed this idle connection as the request went out, so it never saw
      // the request. Sent once more, on another connection, instead of surfacing as a 503 upstream_reset.
      this.replacement = this.pool.replay(spec, sink);
      return;
    }
    this.spec = null;
    if (sink !== null) {
      const err = this.error ?? Object.assign(new Error('upstream closed the connection before the response completed'), { code: 'ECONNRESET' });
      sink.onUpstreamError(err, !wasConnected);
    }
  }

  /**
   * Whether the request in flight can be sent again after this connection closed under it: only on a reused
   * connection (a fresh one failing is the upstream's answer), before any byte of the response, for an idempotent
   * request, and only once. With a body, the router does it (see UPSTREAM_UNSEEN).
   */
  private replayable(wasConnected: boolean): boolean {
    const spec = this.spec;
    return wasConnected && spec !== null && IDEMPOTENT.has(spec.method) && this.served > 0 && !this.responseStarted && !this.replay;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.rawLeft = 0;
    this.detachBody();
    this.clearConnectTimer();
    this.clearIdleTimer();
    this.stopDiscarding();
    releaseParser(this.parser);
    this.socket.destroy();
    this.pool.forget(this);
  }

  private clearConnectTimer(): void {
    if (this.connectTimer !== null) {
      clearTimeout(this.connectTimer);
      this.connectTimer = null;
    }
  }

  // --- UpstreamStream ---

  resume(): void {
    if (this.replacement !== null) {
      this.replacement.resume();
      return;
    }
    this.paused = false;
    resumeReading(this.socket);
  }

  abort(keepConnection = false): void {
    this.sink = null;
    const replacement = this.replacement;
    if (replacement !== null) {
      this.close();
      replacement.abort(keepConnection);
      return;
    }
    // Only a request sent in full leaves the connection in a state a complete response brings back to idle.
    // (spec is null once the response is complete: nothing is in flight to wait for.)
    // A body read around the parser is at least RAW_BODY_MIN_BYTES, more than a discard reads: closed at once.
    if (!keepConnection || this.spec === null || this.closed || !this.connected || !this.requestWritten || !this.reusable || this.unsolicited || this.discarding || this.rawLeft > 0 || this.pool.closing) {
      this.close();
      return;
    }
    this.discarding = true;
    this.discardedBytes = 0;
    this.lastActivityMs = coarseClock.nowMs;
    this.discardTimer = setTimeout(onDiscardTimeout, ABORT_DISCARD_MS, this);
    if (this.paused) this.resume();
  }

  /** The pool is going away: the connection closes whatever it carries. */
  destroy(): void {
    this.sink = null;
    this.close();
    this.replacement?.abort();
  }
}

/** The value of the first keep-alive line of a head (the discard path; others have RESPONSE_NAMES note it). */
function firstKeepAlive(lines: FlatHeaders): string | undefined {
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const name = lines[i]!;
    if (name.length === 10 && headerNameIs(name, 'keep-alive')) return lines[i + 1];
  }
  return undefined;
}

/** The buffer the read onRawRead just took goes on with: Node asks for it right after the callback, unbound. */
let nextRaw: Buffer | null = null;
function onRawRead(this: net.Socket, nread: number, buf: Buffer): boolean {
  const connection = (this as SocketOf)[kConnection];
  const flowing = connection.onRawRead(nread, buf);
  nextRaw = connection.rawBuffer ?? PARKING;
  return flowing;
}
function nextRawBuffer(): Buffer {
  const next = nextRaw!;
  nextRaw = null;
  return next;
}
function onSocketConnect(this: SocketOf): void {
  this[kConnection].onConnect();
}
function onSocketEnd(this: SocketOf): void {
  this[kConnection].onEnd();
}
function onSocketError(this: SocketOf, err: Error): void {
  this[kConnection].onError(err);
}
function onSocketClose(this: SocketOf): void {
  this[kConnection].onClose();
}
function onSocketDrain(this: SocketOf): void {
  this[kConnection].resumeBody();
}
function onIdleCheck(connection: H1Connection): void {
  connection.onIdleCheck();
}
function onDiscardTimeout(connection: H1Connection): void {
  connection.onDiscardTimeout();
}
function onConnectTimeout(connection: H1Connection, timeoutMs: number): void {
  if (connection.connected) return;
  connection.socket.destroy(Object.assign(new Error(`connect timeout after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
}
function onBodyData(this: BodyOf, chunk: Buffer): void {
  this[kConnection]?.writeBody(chunk);
}
function onBodyEnd(this: BodyOf): void {
  this[kConnection]?.endBody();
}

interface Waiting {
  spec: UpstreamRequestSpec;
  sink: UpstreamSink;
  stream: QueuedStream;
  replay: boolean;
}

/** Stands in for a connection while a request waits in the queue. */
class QueuedStream implements UpstreamStream {
  connection: H1Connection | null = null;
  constructor(private readonly pool: Http1Pool) {}
  resume(): void {
    this.connection?.resume();
  }
  abort(keepConnection = false): void {
    if (this.connection !== null) this.connection.abort(keepConnection);
    else this.pool.cancelWaiting(this);
  }
}

export class Http1Pool implements ConnectionPool {
  private readonly idle: H1Connection[] = [];
  private readonly all = new Set<H1Connection>();
  private readonly waiting: Waiting[] = [];
  private draining = false;

  constructor(
    private readonly host: string,
    private readonly port: number,
    readonly options: PoolOptions,
  ) {}

  get pending(): number {
    return this.waiting.length;
  }

  /**
   * maxConnections, but at least one: Envoy always lets a host with no connection open one, so max_connections 0
   * does not leave every request queued for the route timeout (or for ever without one).
   */
  private get maxConnections(): number {
    return Math.max(1, this.options.maxConnections);
  }

  get connections(): number {
    return this.all.size;
  }

  /** Draining or destroyed: a cancelled request's connection closes rather than waits to be reused. */
  get closing(): boolean {
    return this.draining;
  }

  request(spec: UpstreamRequestSpec, sink: UpstreamSink): UpstreamStream {
    return this.send(spec, sink, false);
  }

  /** A request a reused connection lost before the upstream saw it (the keep-alive race), sent once more. */
  replay(spec: UpstreamRequestSpec, sink: UpstreamSink): UpstreamStream {
    return this.send(spec, sink, true);
  }

  private send(spec: UpstreamRequestSpec, sink: UpstreamSink, replay: boolean): UpstreamStream {
    // LIFO: the most recently used connection is the one least likely to have been closed by the server.
    let connection = this.idle.pop();
    if (connection === undefined && this.all.size < this.maxConnections) connection = this.open();
    if (connection !== undefined) {
      connection.start(spec, sink, replay);
      return connection;
    }
    const pending = this.options.pending;
    if (!pending.tryAdd()) {
      this.options.events.onPendingOverflow();
      sink.onUpstreamError(pendingOverflowError(pending.max), false);
      return REFUSED_STREAM;
    }
    const stream = new QueuedStream(this);
    this.waiting.push({ spec, sink, stream, replay });
    sink.onUpstreamQueued?.();
    return stream;
  }

  /** A waiting request was cancelled (client gone, timeout): it leaves the queue now, not when its turn comes. */
  cancelWaiting(stream: QueuedStream): void {
    const i = this.waiting.findIndex((w) => w.stream === stream);
    if (i < 0) return;
    this.waiting.splice(i, 1);
    this.options.pending.remove();
  }

  release(connection: H1Connection): void {
    if (this.startWaiting(connection)) return;
    if (this.draining || this.idle.length >= this.options.maxIdle) {
      connection.close();
      return;
    }
    this.idle.push(connection);
  }

  /**
   * A connection closed: drop it, and let a waiting request have its place. A drained pool too: it takes no new
   * requests, but those it queued before the drain are still its to send (else they wait for the route timeout,
   * or for ever without one). destroy() empties the queue first.
   */
  forget(connection: H1Connection): void {
    if (!this.all.delete(connection)) return;
    const i = this.idle.indexOf(connection);
    if (i >= 0) this.idle.splice(i, 1);
    if (this.all.size >= this.maxConnections) return;
    const next = this.nextWaiting();
    if (next !== undefined) this.startOn(this.open(), next);
  }

  drain(): void {
    this.draining = true;
    for (const connection of this.idle.splice(0)) connection.close();
  }

  destroy(): void {
    this.draining = true;
    for (const waiting of this.waiting.splice(0)) {
      this.options.pending.remove();
      waiting.sink.onUpstreamError(new Error('connection pool closed'), true);
    }
    for (const connection of [...this.all]) connection.destroy();
  }

  private startWaiting(connection: H1Connection): boolean {
    const next = this.nextWaiting();
    if (next === undefined) return false;
    this.startOn(connection, next);
    return true;
  }

  private nextWaiting(): Waiting | undefined {
    const next = this.waiting.shift();
    if (next !== undefined) this.options.pending.remove();
    return next;
  }

  private startOn(connection: H1Connection, waiting: Waiting): void {
    waiting.stream.connection = connection;
    waiting.sink.onUpstreamDequeued?.();
    connection.start(waiting.spec, waiting.sink, waiting.replay);
  }

  private open(): H1Connection {
    const connection = new H1Connection(this, this.host, this.port);
    this.all.add(connection);
    return connection;
  }
}
