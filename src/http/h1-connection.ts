// One downstream HTTP/1.x connection on a raw socket: Node's parser reads requests, this class writes the
// responses. Requests are answered in order; pipelined ones wait (reading pauses meanwhile, so at most one
// socket read of them is buffered). It answers what no exchange can: parse errors (400/431, then close),
// request timeouts (408), idle keep-alive timeouts and the drain. Events reach it through shared functions
// and a symbol: a request costs no closure.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Readable } from 'node:stream';
import { REASONS, type Reason } from '../reasons.js';
import type { HttpContext } from './context.js';
import { HttpExchange } from './exchange.js';
import { forwardableRequestTrailers, type HeaderMap } from './headers.js';
import { setRequestTrailers } from '../upstream/pool.js';
import type { Downstream, LocalReplyResult } from './downstream.js';
import {
  CRLF,
  METHODS,
  PendingHead,
  chunkHeader,
  consumeSocket,
  createParser,
  headerMapFromFlat,
  HeaderNames,
  isParseError,
  lastChunkWithTrailers,
  releaseParser,
  unconsumeSocket,
  pauseReading,
  resumeReading,
  serializeHeaders,
  type FlatHeaders,
  type NativeParser,
  type ParseError,
  type ParserOwner,
} from './h1-parser.js';
import { httpDate, rawLocalReply } from './raw-reply.js';
import { proxyUpgrade, type UpgradeRequest } from './upgrade.js';
import { writeLatin1 } from '../tcp/direct-write.js';
import { COARSE_TICK_MS, coarseClock, coarseNow, startCoarseClock, unrefTimer, unsentBytes } from '../tcp/coarse-clock.js';
import { destinationPort } from '../listener/original-dst.js';

const kConnection = Symbol('pillion.h1downstream');
/** Request heads' names, remembered across requests and connections (see HeaderNames). */
const REQUEST_NAMES = new HeaderNames(null);
type SocketOf = Socket & { [kConnection]: H1Connection };
/** Buffer's own latin1 decoder (what toString('latin1') ends in; src/h2/hpack.ts uses it too). */
type Latin1Buffer = Buffer & { latin1Slice(start: number, end: number): string };

/** What `kOnHeadersComplete` returns to hand the rest of the bytes to an Upgrade/CONNECT handler. */
const UPGRADE = 2;
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';
/** Bodies up to this size go out in the same buffer as the head (Buffer's pool serves up to 4 KiB). */
const SMALL_BODY_BYTES = 2048;

/** A request body as a stream, fed by the parser; reading it lets the socket read on. */
class RequestBody extends Readable {
  constructor(private readonly connection: H1Connection) {
    super();
  }
  override _read(): void {
    this.connection.bodyWantsMore();
  }
}

/** One parsed request head, and where its answer stands. */
export class H1Request {
  exchange: HttpExchange | null = null;
  body: RequestBody | null = null;
  requestDone = false;
  responseDone = false;
  constructor(
    readonly method: string,
    readonly url: string,
    readonly headers: HeaderMap,
    readonly http11: boolean,
    readonly keepAlive: boolean,
  ) {}
}

/** A coarse clock for head deadlines, refreshed by the connection manager's sweep. */
export interface HeadClock {
  readonly nowMs: number;
}

export class H1Connection implements ParserOwner, Downstream {
  /**
   * performance.now() by which the head of the request being received must be complete (0 = none set): set at
   * accept for the first request, and re-armed while reading is paused; the manager's sweep enforces it (headOverdue).
   * Later heads are timed from their first byte by the parser itself.
   */
  headDeadlineMs = 0;
  readonly socket: SocketOf;
  private readonly parser: NativeParser;
  readonly remoteAddress: string;
  /** The port the connection arrived on, read once (net.Socket's getter goes through getsockname's cache). */
  readonly localPort: number;

  /** The request being answered, and those parsed after it (pipelining). */
  private active: H1Request | null = null;
  private readonly queue: H1Request[] = [];
  /** The request whose body the parser is reading now (the active one or the last queued). */
  private parsing: H1Request | null = null;
  private readonly pendingHead = new PendingHead();
  private upgrade: UpgradeRequest | null = null;

  // Response of the active request.
  private head: string | null = null;
  private chunked = false;
  private noBody = false;
  private closeAfterResponse = false;

  /** Set after a parse error or request timeout: the rest of the byte stream is not read. */
  private readStopped = false;
  /** A reply owed to a bad pipelined request, sent once the active response is done. */
  private pendingReply: Reason | null = null;
  /** The bad request is a HEAD (its body was malformed): its reply has no body. */
  private pendingReplyToHead = false;
  private bodyBackpressure = false;
  /** Body writes since the socket was corked are gathered into one writev (see write()). */
  corkedBurst = false;
  /** A TLS client: its socket encrypts (or copies) a chunk it is handed before write() returns. */
  readonly encrypted: boolean;
  /** The last body write went to an encrypting socket at once, not behind a write in flight: see lastWriteFlushed. */
  private lastWriteEncrypted = false;
  private reading = true;
  private closed = false;
  private requestTimer: NodeJS.Timeout | null = null;
  /**
   * The idle timeout (or, once we closed our side, the linger): one timer that checks lastActivityMs when it fires
   * and re-arms for what is left (onIdleCheck), instead of a socket timeout refreshed on every read and write.
   */
  private idleMs: number;
  private idleTimer: NodeJS.Timeout | null;
  /** coarseClock time of the last read, of the connection going idle, or of a drain. */
  private lastActivityMs: number;
  /** Bytes still to be written at the last idle check (see unsentBytes). */
  private unsentAtCheck = 0;

  constructor(
    readonly ctx: HttpContext,
    socket: Socket,
    private readonly onClosed: (connection: H1Connection) => void,
    private readonly clock: HeadClock,
  ) {
    this.socket = socket as SocketOf;
    this.socket[kConnection] = this;
    this.remoteAddress = socket.remoteAddress ?? '';
    // Under interception, the port the client dialed, not the redirect listener's (RBAC `ports` rules).
    this.localPort = destinationPort(socket);
    this.encrypted = (socket as TLSSocket).encrypted === true;
    const chain = ctx.chain;
    const headTimeoutMs = chain.requestHeadersTimeoutMs;
    // No onMessageBegin for the head timeout alone: a C++ → JS call per request; the sweep reads the parser's own
    // message clock instead (headOverdue). request_timeout still needs it, for its timer.
    this.parser = createParser('request', chain.maxRequestHeadersKb * 1024, this, chain.requestTimeoutMs > 0);
    // The first request's head is due from accept: a client that connects and says nothing is not kept for ever.
    if (headTimeoutMs > 0) this.headDeadlineMs = performance.now() + headTimeoutMs;
    socket.on('end', onSocketEnd);
    socket.on('error', onSocketError);
    socket.on('close', onSocketClose);
    socket.on('drain', onSocketDrain);
    startCoarseClock();
    this.lastActivityMs = coarseClock.nowMs;
    this.idleMs = chain.idleTimeoutMs > 0 ? chain.idleTimeoutMs : DEFAULT_IDLE_TIMEOUT_MS;
    this.idleTimer = unrefTimer(onIdleCheck, this.idleMs + COARSE_TICK_MS, this);
  }

  /** Starts reading: first what the listener's sniffer already read (pushed back into the stream), then the rest. */
  start(): void {
    const socket = this.socket;
    const sniffed = socket.readableLength > 0 ? (socket.read() as Buffer | null) : null;
    if (!consumeSocket(this.parser, socket)) {
      socket.destroy();
      return;
    }
    if (sniffed !== null) this.afterExecute(this.parser.execute(sniffed), sniffed);
  }

  // --- reading requests ---

  onExecute(ret: number | ParseError): void {
    this.afterExecute(ret, null);
  }

  /** After each read the parser took from the socket (`input` given when we fed it ourselves). */
  private afterExecute(ret: number | ParseError, input: Buffer | null): void {
    // Closing after a response or an error: whatever else the client sent is ignored, and does not keep the
    // connection alive (the linger timer runs on).
    if (this.closed || this.readStopped) return;
    this.lastActivityMs = coarseClock.nowMs;
    if (isParseError(ret)) {
      this.onParseError(ret);
      return;
    }
    const upgrade = this.upgrade;
    if (upgrade !== null) {
      this.upgrade = null;
      const head = (input ?? this.parser.getCurrentBuffer()).subarray(ret);
      this.handOver(upgrade, head);
    }
  }

  onHeaderLines(lines: FlatHeaders, url: string): void {
    this.pendingHead.add(lines, url);
  }

  onHeadersComplete(
    major: number,
    minor: number,
    givenLines: FlatHeaders | undefined,
    method: number,
    givenUrl: string | undefined,
    _status: number,
    upgrade: boolean,
    keepAlive: boolean,
  ): number {
    this.headDeadlineMs = 0;
    const lines = this.pendingHead.takeLines(givenLines);
    const url = this.pendingHead.takeUrl(givenUrl);
    // Closing (after `connection: close`, an error or a drain): requests the client still sends are not served.
    if (this.closed || this.readStopped) return 0;
    const methodName = METHODS[method] ?? 'GET';
    // RFC 9110 §7.8: Upgrade in an HTTP/1.0 request is ignored (a plain request, the field dropped as hop-by-hop).
    if (upgrade && (minor >= 1 || major > 1 || methodName === 'CONNECT')) {
      this.upgrade = { method: methodName, url, lines, http11: major === 1 && minor >= 1 };
      return UPGRADE;
    }
    if (lines.length > 2 * this.ctx.chain.maxHeadersCount) {
      // Envoy's max_headers_count: thousands of tiny header lines fit the size limit and cost per line.
      this.failRequest(REASONS.headersTooLarge);
      return 0;
    }
    if (this.queue.length >= MAX_PIPELINED_REQUESTS) {
      // One socket read of tiny pipelined requests is thousands of them: answer those queued, then refuse.
      this.failRequest(REASONS.pipelineOverflow);
      return 0;
    }
    const headers = REQUEST_NAMES.map(lines);
    const request = new H1Request(methodName, url, headers, major === 1 && minor >= 1, keepAlive && !upgrade); // nothing is parsed past an Upgrade head
    const te = headers['transfer-encoding'];
    const cl = headers['content-length'];
    if (te !== undefined || (cl !== undefined && cl !== '0')) request.body = new RequestBody(this);
    else request.requestDone = true;
    this.parsing = request;
    if (this.active === null) this.begin(request);
    else {
      this.queue.push(request);
      this.updateReading();
    }
    return 0;
  }

  onBody(chunk: Buffer): void {
    const body = this.parsing?.body;
    // No body stream: the answer went out before the body finished arriving; it is read and dropped.
    if (body === null || body === undefined) return;
    if (!body.push(chunk) && !this.bodyBackpressure) {
      this.bodyBackpressure = true;
      this.updateReading();
    }
  }

  onMessageComplete(): void {
    this.clearRequestTimer();
    // Trailer lines of a chunked request body arrive like header lines: they go upstream with the body's end,
    // and must not be taken for part of the next request's head.
    const pending = this.pendingHead;
    const trailerLines = pending.lines.length === 0 ? null : pending.takeLines(undefined);
    pending.clear();
    if (trailerLines !== null && trailerLines.length > 2 * this.ctx.chain.maxHeadersCount) {
      // max_headers_count bounds trailers too (as Envoy's): thousands of tiny lines fit the size limit. The body
      // never ends, so the upstream never takes it for a complete request; 431 if nothing was answered yet.
      this.failRequest(REASONS.headersTooLarge);
      return;
    }
    const request = this.parsing;
    if (request === null) return;
    this.parsing = null;
    request.requestDone = true;
    const body = request.body;
    if (body !== null) {
      const trailers = trailerLines === null ? null : forwardableRequestTrailers(headerMapFromFlat(trailerLines, null));
      if (trailers !== null) setRequestTrailers(body, trailers);
      body.push(null);
      // The active request's route timeout starts at its last byte (a queued one's starts when it is begun).
      request.exchange?.onRequestComplete();
    }
    // The body's reader asks for more through _read, which an ended stream never calls again: a body that filled
    // its buffer in the read that also ended it would otherwise leave the connection paused for good.
    if (this.bodyBackpressure) {
      this.bodyBackpressure = false;
      this.updateReading();
    }
    if (request === this.active && request.responseDone) this.next();
  }

  /**
   * Whether the head being received is past request_headers_timeout (the sweep asks, then calls onHeadersTimeout):
   * the deadline set at accept or re-armed, else the parser's clock from the current message's first byte.
   */
  headOverdue(now: number): boolean {
    if (this.headDeadlineMs !== 0) return now >= this.headDeadlineMs;
    const timeoutMs = this.ctx.chain.requestHeadersTimeoutMs;
    if (timeoutMs === 0 || this.closed || this.readStopped) return false;
    return !this.parser.headersCompleted() && this.parser.duration() >= timeoutMs;
  }

  onMessageBegin(): void {
    const chain = this.ctx.chain;
    if (chain.requestTimeoutMs > 0) {
      this.clearRequestTimer();
      this.requestTimer = setTimeout(onRequestTimeout, chain.requestTimeoutMs, this);
    }
  }

  bodyWantsMore(): void {
    if (!this.bodyBackpressure) return;
    this.bodyBackpressure = false;
    this.updateReading();
  }

  private updateReading(): void {
    const shouldRead = !this.bodyBackpressure && this.queue.length === 0;
    if (shouldRead === this.reading || this.closed) return;
    this.reading = shouldRead;
    if (shouldRead) resumeReading(this.socket);
    else pauseReading(this.socket);
  }

  private begin(request: H1Request): void {
    this.active = request;
    this.head = null;
    this.chunked = false;
    this.noBody = request.method === 'HEAD';
    this.closeAfterResponse = !request.keepAlive;
    // The proxy answers 100-continue itself, like Node's server did: the client sends, the upstream reads.
    if (!request.requestDone && request.http11) {
      const expect = request.headers.expect;
      if (typeof expect === 'string' && expect.toLowerCase() === '100-continue') this.socket.write(CONTINUE, 'latin1');
    }
    const exchange = new HttpExchange(this.ctx);
    request.exchange = exchange;
    exchange.startH1(this, request);
  }

  /** The active request is answered and read: on to the next one, or close. */
  private next(): void {
    this.active = null;
    // Idle from here (the response's last bytes went out just now), until the next read.
    this.lastActivityMs = coarseClock.nowMs;
    if (!this.closeAfterResponse && !this.closed) {
      const queued = this.queue.shift();
      if (queued !== undefined) {
        this.updateReading();
        this.begin(queued);
        return;
      }
    }
    // A bad request pipelined behind the good ones gets its 400 once they are answered, unless the last answer
    // said `connection: close` (a drain, or a body the close delimits, which the 400 would be read as part of).
    if (this.pendingReply !== null && !this.closeAfterResponse && !this.closed) this.replyAndClose(this.pendingReply, this.pendingReplyToHead);
    else if (this.closeAfterResponse || this.closed || this.pendingReply !== null) this.closeGracefully();
  }

  // --- writing the response of the active request (called by its exchange) ---

  respond(status: number, headers: HeaderMap, _endStream = false): void {
    const request = this.active!;
    // request_timeout ends where the response starts (Envoy's rule), for the request still being received.
    if (this.requestTimer !== null && this.parsing === request) this.clearRequestTimer();
    let head = serializeHeaders(statusLine(status), headers);
    if (status === 204 || status === 304) this.noBody = true;
    if (!this.noBody && headers['content-length'] === undefined) {
      // Unknown length: chunked for HTTP/1.1 clients; an HTTP/1.0 client reads until the connection closes.
      if (request.http11) {
        this.chunked = true;
        head += 'transfer-encoding: chunked\r\n';
      } else this.closeAfterResponse = true;
    }
    if (this.ctx.draining) this.closeAfterResponse = true;
    if (this.closeAfterResponse) head += 'connection: close\r\n';
    else {
      if (!request.http11) head += 'connection: keep-alive\r\n';
      // On an inbound listener the client is usually a peer sidecar's pool: told how long we keep an idle
      // connection, it keeps its own open as long instead of its 4 s default, and does not pay a new (mTLS)
      // handshake after each pause in traffic.
      if (this.ctx.direction === 'inbound') head += keepAliveHint(this.ctx.chain.idleTimeoutMs);
    }
    this.head = head + CRLF;
  }

  /** Writes body bytes (the head goes out with the first); false asks the caller to wait for drain. */
  write(chunk: Buffer): boolean {
    this.lastWriteEncrypted = false;
    // Nothing to send: as a chunk of a chunked body it would read as the body's end.
    if (this.closed || chunk.length === 0) return true;
    const socket = this.socket;
    const head = this.head;
    if (this.noBody) {
      if (head !== null) this.flushHead();
      return true;
    }
    if (head === null && !this.chunked) {
      if (chunk.length >= DIRECT_WRITE_BYTES) {
        // A large chunk (a body the upstream pool reads around the parser, 64 KiB a read) goes out in a write of
        // its own, after what was gathered before it: there is nothing to gather, and once the kernel took it
        // whole the pool reads into the same buffer again (lastWriteFlushed). Past BURST_BYTES queued, the
        // upstream waits for 'drain'.
        if (this.corkedBurst) uncorkBurst(this);
        // Nothing queued: the chunk goes to the handle now (a write in flight would queue it in the Writable).
        this.lastWriteEncrypted = this.encrypted && socket.writableLength === 0;
        socket.write(chunk);
        return socket.writableLength < BURST_BYTES;
      }
      // A 1 MiB body arrives as a burst of reads (16 KiB each out of TLS): corked until the loop's check phase,
      // they leave in one writev instead of one write each. Up to BURST_BYTES may wait (the socket's own 16 KiB
      // high-water mark would pause the upstream after one chunk); past it the upstream pauses until 'drain'.
      if (!this.corkedBurst) {
        this.corkedBurst = true;
        socket.cork();
        setImmediate(uncorkBurst, this);
      }
      socket.write(chunk);
      return socket.writableLength < BURST_BYTES;
    }
    if (head !== null && !this.chunked && chunk.length <= SMALL_BODY_BYTES) {
      // Head and a small body in one write. The body joins the head as a latin1 string (byte for byte both ways):
      // one native call for the string and one for the write, ~170 ns a response less than a pooled buffer filled
      // by two native copies (microbenchmark, 100-byte body).
      this.head = null;
      // latin1Slice is what toString('latin1') calls after its argument checks and encoding lookup.
      return writeLatin1(socket, head + (chunk as Latin1Buffer).latin1Slice(0, chunk.length), this.encrypted);
    }
    socket.cork();
    if (head !== null) {
      this.head = null;
      socket.write(this.chunked ? head + chunkHeader(chunk.length) : head, 'latin1');
    } else socket.write(chunkHeader(chunk.length), 'latin1');
    let flushed = socket.write(chunk);
    if (this.chunked) flushed = socket.write(CRLF, 'latin1');
    socket.uncork();
    return flushed;
  }

  lastWriteFlushed(): boolean {
    // A TLS socket's write completes a loop turn later, but SSL_write has taken the bytes (or Node copied them,
    // mid-handshake) before write() returned: the buffer is free at once.
    return this.lastWriteEncrypted || this.socket.writableLength === 0;
  }

  end(trailers: HeaderMap | null): void {
    if (this.closed) return;
    if (this.chunked) {
      const last = lastChunkWithTrailers(trailers);
      const head = this.head;
      this.head = null;
      writeLatin1(this.socket, head === null ? last : head + last, this.encrypted);
    } else if (this.head !== null) this.flushHead();
    this.responseEnded();
  }

  /** A reply the proxy makes itself (the exchange picked status and text). */
  reply(status: number, headers: HeaderMap, body: string): void {
    this.respond(status, headers);
    // A HEAD gets the head only (its content-length says what a GET would carry). The write is latin1 (one char,
    // one byte): a body with any non-ASCII character (a configured direct_response) goes as its UTF-8 bytes, which
    // is what content-length counted; written as is, fewer and wrong bytes went out and the client waited.
    const text = this.noBody ? '' : Buffer.byteLength(body) === body.length ? body : Buffer.from(body, 'utf8').toString('latin1');
    writeLatin1(this.socket, this.head! + text, this.encrypted);
    this.head = null;
    this.responseEnded();
  }

  localReply(reason: Reason, body: string): LocalReplyResult {
    const bytes = Buffer.byteLength(body);
    const headers: HeaderMap = { date: httpDate(), 'content-type': 'text/plain; charset=utf-8', 'content-length': String(bytes), 'x-pillion-reason': reason.id };
    // As Envoy marks a circuit breaker's refusal: a proxy in front (a peer's outbound sidecar) does not retry it.
    if (reason === REASONS.overflow) headers['x-envoy-overloaded'] = 'true';
    this.reply(reason.httpStatus, headers, body);
    return { status: reason.httpStatus, bytes };
  }

  requestComplete(): boolean {
    return this.active === null || this.active.requestDone;
  }

  /** The response cannot be completed (upstream failed mid-body, timeout): the client must see a broken one. */
  reset(_why?: string): void {
    this.socket.destroy();
  }

  private flushHead(): void {
    const head = this.head!;
    this.head = null;
    writeLatin1(this.socket, head, this.encrypted);
  }

  private responseEnded(): void {
    const request = this.active!;
    request.responseDone = true;
    request.exchange = null;
    // The body no one will read now (an early answer) is parsed and dropped, so the connection stays usable.
    if (!request.requestDone && request.body !== null) {
      request.body = null;
      this.bodyBackpressure = false;
      this.updateReading();
    }
    if (request.requestDone || this.closeAfterResponse) this.next();
  }

  // --- connection events ---

  private onParseError(err: ParseError): void {
    // Bytes after a request that said `connection: close`: not to be processed (RFC 9112 §9.6), nor answered.
    if (err.code === 'HPE_CLOSED_CONNECTION') {
      this.readStopped = true;
      return;
    }
    const reason: Reason = err.code === 'HPE_HEADER_OVERFLOW' ? REASONS.headersTooLarge : REASONS.badRequest;
    this.failRequest(reason);
  }

  onRequestTimeout(): void {
    this.requestTimer = null;
    this.failRequest(REASONS.requestTimeout);
  }

  /** The head of the request being received (or the first one, since accept) is overdue: 408, then close. */
  onHeadersTimeout(): void {
    // Reading is paused while pipelined requests wait for their turn: the rest of the head cannot come in, and
    // the client is not the slow one. The deadline runs from when we read again.
    if (!this.reading && !this.closed) {
      this.headDeadlineMs = this.clock.nowMs + this.ctx.chain.requestHeadersTimeoutMs;
      return;
    }
    this.headDeadlineMs = 0;
    if (this.closed) return;
    this.failRequest(REASONS.requestHeaderTimeout);
  }

  /**
   * The byte stream cannot be trusted any more (bad syntax, request too slow): stop reading, answer the request
   * the bad bytes belong to if nothing was sent for it yet, then close. RFC 9112 §9.6 allows closing here.
   */
  private failRequest(reason: Reason): void {
    if (this.readStopped) return;
    this.readStopped = true;
    this.clearRequestTimer();
    const active = this.active;
    const parsing = this.parsing;
    this.parsing = null;
    if (active === null) {
      this.closeAfterResponse = true;
      this.replyAndClose(reason);
    } else if (parsing === active) {
      // The bad bytes are the active request's own (its body): its exchange answers, or resets if it cannot.
      this.closeAfterResponse = true;
      if (active.exchange !== null) active.exchange.failDownstream(reason);
      else this.socket.destroy(); // answered already: nothing more can be said on this connection
    } else {
      // The bad bytes come after the active request: it and the complete requests queued behind it are answered
      // (keep-alive, as they asked), then the bad one gets its 400 and the connection closes (README). A queued
      // request whose body the bad bytes cut short is the bad one: it is dropped and answered by that 400.
      if (parsing !== null && this.queue[this.queue.length - 1] === parsing) {
        this.queue.pop();
        this.pendingReplyToHead = parsing.method === 'HEAD';
      }
      this.pendingReply = reason;
    }
  }

  private replyAndClose(reason: Reason, toHead = false): void {
    this.ctx.stats.localReply(reason);
    this.closeSoon();
    this.socket.end(rawLocalReply(reason, toHead));
  }

  /**
   * The client closed its sending side. Like Node's server (and Envoy's HTTP/1 codec), that means it is gone:
   * requests in flight are cancelled upstream. Waiting on a half-open socket would hold upstream work for no one.
   */
  onEnd(): void {
    this.socket.destroy();
  }

  /**
   * The idle timer fired. Idle keep-alive connections close once nothing was read for the idle time (or the linger)
   * and no byte left; a request in flight is its exchange's timeout to enforce. Stamps run up to COARSE_TICK_MS
   * behind, so the wait is that much longer: never before the idle time told to the client (keepAliveHint).
   */
  onIdleCheck(): void {
    this.idleTimer = null;
    if (this.socket.destroyed) return;
    const now = coarseNow();
    // A response still leaving (a slow client reading it): each change of what is left to send is activity.
    const unsent = unsentBytes(this.socket);
    if (unsent !== this.unsentAtCheck) {
      this.unsentAtCheck = unsent;
      this.lastActivityMs = now;
    }
    const waitMs = this.idleMs + COARSE_TICK_MS;
    if (this.active !== null) {
      this.idleTimer = unrefTimer(onIdleCheck, waitMs, this);
      return;
    }
    const idle = now - this.lastActivityMs;
    if (idle < waitMs) {
      this.idleTimer = unrefTimer(onIdleCheck, waitMs - idle, this);
      return;
    }
    this.socket.destroy();
  }

  onDrain(): void {
    // The client took what was queued: activity, as a completed write is for a socket timeout.
    this.lastActivityMs = coarseClock.nowMs;
    this.active?.exchange?.resumeUpstream();
  }

  onClose(): void {
    this.closed = true;
    releaseParser(this.parser);
    this.clearRequestTimer();
    this.clearIdleTimer();
    const exchange = this.active?.exchange ?? null;
    this.active = null;
    this.queue.length = 0;
    this.parsing = null;
    if (exchange !== null) exchange.onDownstreamClosed();
    this.onClosed(this);
  }

  /** Drain: idle connections close now, busy ones after their current response. */
  drain(): void {
    this.closeAfterResponse = true;
    if (this.active === null) this.closeGracefully();
  }

  private closeGracefully(): void {
    this.closeSoon();
    this.socket.end();
  }

  /**
   * We have sent our last byte. A client normally closes its side at once; one that does not (or keeps
   * sending) is cut off after a short linger, as nginx's lingering_timeout does, instead of the idle timeout.
   */
  private closeSoon(): void {
    this.closed = true;
    this.clearIdleTimer();
    if (this.socket.destroyed) return;
    this.idleMs = CLOSE_LINGER_MS;
    this.lastActivityMs = coarseClock.nowMs;
    this.idleTimer = unrefTimer(onIdleCheck, CLOSE_LINGER_MS + COARSE_TICK_MS, this);
  }

  private clearIdleTimer(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  private clearRequestTimer(): void {
    if (this.requestTimer !== null) {
      clearTimeout(this.requestTimer);
      this.requestTimer = null;
    }
  }

  private handOver(upgrade: UpgradeRequest, head: Buffer): void {
    if (this.active !== null) {
      // An Upgrade pipelined behind a request still being answered: rare enough to refuse (after that answer).
      this.failRequest(REASONS.badRequest);
      return;
    }
    this.closed = true;
    this.clearRequestTimer();
    this.clearIdleTimer();
    // The socket's reads go back to its JS stream, for the upgrade handler to pipe.
    unconsumeSocket(this.parser);
    releaseParser(this.parser);
    const socket = this.socket;
    socket.off('end', onSocketEnd);
    socket.off('error', onSocketError);
    socket.off('close', onSocketClose);
    socket.off('drain', onSocketDrain);
    this.onClosed(this);
    proxyUpgrade(this.ctx, upgrade, socket, head);
  }
}

/** Body bytes a downstream HTTP/1 socket queues before the upstream is paused (backpressure). */
const BURST_BYTES = 65_536;
/** Body chunks from this size up are written at once, not gathered (TLS reads give 16 KiB, raw reads 64 KiB). */
const DIRECT_WRITE_BYTES = 32 * 1024;

function uncorkBurst(connection: H1Connection): void {
  // Flushed already (a large chunk followed): this socket's cork count is ours to keep balanced.
  if (!connection.corkedBurst) return;
  connection.corkedBurst = false;
  connection.socket.uncork();
}

/** `HTTP/1.1 200 OK\r\n` and the like, made once per status code (the parser bounds upstream codes to 100 - 999). */
const statusLines: (string | undefined)[] = new Array<string | undefined>(1000).fill(undefined);
function statusLine(status: number): string {
  let line = statusLines[status];
  if (line === undefined) {
    line = 'HTTP/1.1 ' + status + ' ' + (STATUS_CODES[status] ?? 'Unknown') + CRLF;
    if (status >= 100 && status <= 999) statusLines[status] = line;
  }
  return line;
}

/** Envoy's default downstream idle timeout (1 h) keeps app connection pools from racing our close. */
const DEFAULT_IDLE_TIMEOUT_MS = 3_600_000;

let hintFor = -1;
let hintLine = '';
/** `keep-alive: timeout=N` for the idle timeout a connection gets (one string per setting, not per response). */
function keepAliveHint(idleTimeoutMs: number): string {
  if (idleTimeoutMs !== hintFor) {
    hintFor = idleTimeoutMs;
    hintLine = `keep-alive: timeout=${Math.floor((idleTimeoutMs > 0 ? idleTimeoutMs : DEFAULT_IDLE_TIMEOUT_MS) / 1000)}\r\n`;
  }
  return hintLine;
}
/** Requests parsed ahead of the one being answered, per connection (each costs its head in memory). */
const MAX_PIPELINED_REQUESTS = 64;
/** How long a connection we closed may wait for the client to close its side (nginx's lingering_timeout). */
const CLOSE_LINGER_MS = 5_000;

function onSocketEnd(this: SocketOf): void {
  this[kConnection].onEnd();
}
function onSocketError(this: SocketOf): void {
  // 'close' follows and does the cleanup; this listener keeps the error from being thrown.
}
function onSocketClose(this: SocketOf): void {
  this[kConnection].onClose();
}
function onSocketDrain(this: SocketOf): void {
  this[kConnection].onDrain();
}
function onIdleCheck(connection: H1Connection): void {
  connection.onIdleCheck();
}
function onRequestTimeout(connection: H1Connection): void {
  connection.onRequestTimeout();
}
