// One HTTP/2 connection (RFC 9113), server or client role, without node:http2: framing, flow control, the
// stream state machine and the abuse limits of limits.ts. Events go to owner objects (methods, no closures, no
// EventEmitter per stream); the frames of one loop turn leave in ONE socket write (see flush()).
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { newHeaderMap, type HeaderMap } from '../http/headers.js';
import { REASONS, type Reason } from '../reasons.js';
import { createLogger } from '../observability/logger.js';
import { DecodedHead, HpackDecoder, HpackEncoder, HpackError, HPACK_TOO_LARGE, hostInvalid } from './hpack.js';
import {
  DEFAULT_WINDOW,
  Flag,
  FrameType,
  FRAME_HEADER,
  MAX_FRAME,
  MAX_WINDOW,
  PREFACE,
  readFrameLength,
  Setting,
  writeFrameHeader,
  writeGoaway,
  writePingAck,
  writeRstStream,
  writeSetting,
  writeSettingsAck,
  writeWindowUpdate,
} from './frames.js';
import {
  HEADER_BLOCK_SLACK,
  MAX_EMPTY_FRAMES,
  MAX_HEADER_BLOCK_FRAMES,
  MAX_OUTBOUND_CONTROL_FRAMES,
  PRIORITY_PER_STREAM,
  SOCKET_HIGH_WATER,
  WINDOW_UPDATES_PER_DATA,
  WINDOW_UPDATE_SLACK,
  PREMATURE_RESET_MS,
  PREMATURE_RESET_STREAMS,
  RESET_BURST,
  RESETS_PER_SECOND,
} from './limits.js';
import { ResetBudget } from '../upstream/reset-budget.js';

export const enum H2Error {
  NO_ERROR = 0,
  PROTOCOL_ERROR = 1,
  INTERNAL_ERROR = 2,
  FLOW_CONTROL_ERROR = 3,
  SETTINGS_TIMEOUT = 4,
  STREAM_CLOSED = 5,
  FRAME_SIZE_ERROR = 6,
  REFUSED_STREAM = 7,
  CANCEL = 8,
  COMPRESSION_ERROR = 9,
  CONNECT_ERROR = 10,
  ENHANCE_YOUR_CALM = 11,
  INADEQUATE_SECURITY = 12,
  HTTP_1_1_REQUIRED = 13,
}

const ERROR_NAMES = [
  'NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED',
  'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED',
];

/** An HTTP/2 error code's name, for logs and error messages. */
export function h2ErrorName(code: number): string {
  return ERROR_NAMES[code] ?? `error ${code}`;
}

export interface H2SessionOptions {
  /** Ours, advertised in SETTINGS. Server: enforced (excess HEADERS -> RST_STREAM REFUSED_STREAM). Client: not sent. */
  maxConcurrentStreams: number;
  /** Bytes, RFC 7541 size; advertised as SETTINGS_MAX_HEADER_LIST_SIZE. */
  maxHeaderListSize: number;
  /** Fields per block, pseudo headers included. */
  maxHeaderCount: number;
  /** Per-stream receive window, default 65535. */
  initialWindowSize?: number;
  /** Connection receive window, default 1 MiB (sent as WINDOW_UPDATE on stream 0). */
  connectionWindowSize?: number;
  /** How long the peer has to ACK our SETTINGS before GOAWAY SETTINGS_TIMEOUT (RFC 9113 §6.5.3); default 10 s, 0 = no bound. */
  settingsTimeoutMs?: number;
}

export interface H2SessionOwner {
  onStream(session: H2Session, stream: H2Stream, head: DecodedHead, endStream: boolean): void;
  onRemoteSettings(session: H2Session): void;
  onGoaway(session: H2Session, errorCode: number, lastStreamId: number): void;
  onSessionClose(session: H2Session, error: Error | null, sentGoawayCode: number): void;
  onRefusedHead?(session: H2Session, reason: Reason): void;
}

export interface H2StreamOwner {
  onHead(stream: H2Stream, head: DecodedHead, endStream: boolean): void;
  onData(stream: H2Stream, chunk: Buffer): void;
  onEnd(stream: H2Stream, trailers: HeaderMap | null): void;
  onReset(stream: H2Stream, code: number, why: string): void;
  onDrain(stream: H2Stream): void;
}

// ==== logging ==============================================================================================

let logger: Pick<Logger, 'warn'> | null = null;
let warnedBug = false;

/** The proxy hands its logger in once; without it a warn-level process logger is made on first need. */
export function setH2Logger(l: Pick<Logger, 'warn'>): void {
  logger = l;
}

function logBugOnce(err: unknown, frameType: number): void {
  if (warnedBug) return;
  warnedBug = true;
  logger ??= createLogger('warn');
  logger.warn(
    { err, frameType },
    'HTTP/2: an exception in frame processing ended a connection with GOAWAY INTERNAL_ERROR (a bug; logged once per process)',
  );
}

// ==== constants ============================================================================================

const OUT_START = 16_384;
/**
 * DATA payloads this large are written from the caller's buffer (cork + two writes), not copied. Measured
 * (h2load, 3000 x 1 MiB responses written in 64 KiB chunks): ~300 us of CPU per response this way, ~850 us
 * copying every payload into the output buffer.
 */
const ZERO_COPY_MIN = 8_192;
/**
 * Queued bytes per stream past which write() returns false: the peer's initial window if larger (a stream may
 * fill its window at once), but never past STREAM_QUEUE_MAX: a peer announcing a 2 GiB window and not reading
 * would otherwise make us hold whatever the owner writes.
 */
const STREAM_QUEUE_LIMIT = 65_536;
const STREAM_QUEUE_MAX = 1 << 20;
/** After a connection error GOAWAY or a graceful end, how long the peer gets to close before we destroy. */
const END_GRACE_MS = 1_000;
/**
 * A peer that never ACKs our SETTINGS may never apply them (our window, header list size, stream limit): the
 * connection ends with SETTINGS_TIMEOUT after this long (RFC 9113 §6.5.3; nghttpx, Envoy/oghttp2 likewise).
 */
const SETTINGS_TIMEOUT_MS = 10_000;
/** Client stream ids end at 2^31-1. */
const MAX_STREAM_ID = 0x7fffffff;

const kSession = Symbol('pillion.h2session');
type SessionSocket = Socket & { [kSession]?: H2Session };

/** The 431 we answer over-large request heads with (REASONS.headersTooLarge). */
const TOO_LARGE_HEADERS: HeaderMap = newHeaderMap();
TOO_LARGE_HEADERS['x-pillion-reason'] = REASONS.headersTooLarge.id;
TOO_LARGE_HEADERS['content-length'] = '0';

const EMPTY_QUEUE: Buffer[] = [];

/**
 * Output buffers shared by all sessions of the process: a session takes one at its first frame of a loop turn
 * and gives it back at flush when the kernel took every byte (nothing references it then), so an idle
 * connection holds none. Bounded; a buffer that grew past OUT_START is not kept.
 */
const NO_OUT = Buffer.alloc(0);
const outPool: Buffer[] = [];
const OUT_POOL_MAX = 64;
/**
 * A turn's output past OUT_START (a flush carries every request read from all clients in one poll: 100 gRPC
 * calls are ~25 KiB) moves to a 64 KiB buffer from a second, smaller pool. Allocating and copying a grown buffer
 * on every flush cost more than the writes saved (h2load gRPC unary: 16.4 -> 20.7 µs of CPU per call).
 */
const OUT_BIG = 65_536;
const bigPool: Buffer[] = [];
const BIG_POOL_MAX = 8;

/**
 * Sessions with frames waiting, flushed together once the loop's I/O phase is over (setImmediate): the requests
 * read from several downstream connections in one poll go upstream in one write, and the responses read from
 * several upstream reads reach each client in one. A nextTick flush wrote once per socket read (~0.3 writes per
 * proxied stream at h2load -c 10 -m 10; each loopback write also runs the receiver's TCP input, on our CPU).
 * A session is listed at most once per turn (flushScheduled).
 */
let flushList: H2Session[] = [];
let flushSpare: H2Session[] = [];
let flushAllScheduled = false;

function flushAll(): void {
  flushAllScheduled = false;
  const list = flushList;
  flushList = flushSpare;
  for (let i = 0; i < list.length; i++) {
    const s = list[i]!;
    if (!s.flushScheduled) continue; // flushed already (terminate)
    try {
      flush(s);
    } catch (err) {
      internalError(s, err);
    }
  }
  list.length = 0;
  flushSpare = list;
}

// ==== streams ==============================================================================================

export class H2Stream {
  owner: H2StreamOwner | null;
  /** No more events will come, or it was reset. */
  closed = false;
  /** Server: respond() called (client: the request head went out). */
  sentHeaders = false;
  /** end() called. */
  localEnded = false;
  /** Our END_STREAM (or the end) is framed. */
  localDone = false;
  /** The peer's END_STREAM arrived. */
  remoteEnded = false;
  /** Client: the final response head arrived. Server: always true (the request head opened the stream). */
  gotHead: boolean;
  paused = false;
  /** The peer's window for our DATA on this stream. */
  sendWindow: number;
  /** What the peer may still send on this stream before we credit it. */
  recvAvail: number;
  /** Bytes consumed (or padding) not yet credited back. */
  recvOwed = 0;
  /** Body bytes waiting for window or for the socket; `queue` is shared-empty until first needed. */
  queue: Buffer[] = EMPTY_QUEUE;
  qIndex = 0;
  qOff = 0;
  queueBytes = 0;
  /** Trailers to send after the queue (end(trailers) while data waits). */
  trailers: HeaderMap | null = null;
  /** Server role: when the peer opened it (the session's clock at that read), for the premature-reset rule. */
  openedAtMs = 0;
  inSendList = false;
  needDrain = false;
  /** content-length of the peer's message (-1: none) and the DATA bytes received so far. */
  contentLength = -1;
  received = 0;
  /** Client: a HEAD request (its response has no body whatever its content-length says). */
  noBody = false;
  /** We reset it PROTOCOL_ERROR for the peer's malformed message: head, trailers, a body unlike its content-length (client role: an oversized head too). */
  malformed = false;

  constructor(
    readonly session: H2Session,
    readonly id: number,
    owner: H2StreamOwner | null,
    isServer: boolean,
  ) {
    this.owner = owner;
    this.gotHead = isServer;
    this.sendWindow = session.peerInitialWindow;
    this.recvAvail = session.streamRecvInitial;
  }

  /**
   * Server role: the response head. endStream: no body. Headers must not contain pseudo headers. A 1xx status
   * (100 Continue, 103 Early Hints) is an interim head: it goes out alone and the final respond() follows.
   */
  respond(status: number, headers: HeaderMap | null, endStream: boolean): void {
    const s = this.session;
    if (this.closed || this.sentHeaders || s.dead) return;
    if (status < 200) {
      appendHeaders(s, this.id, 0, KIND_RESPONSE, status, headers, '', '', '', '');
      return;
    }
    this.sentHeaders = true;
    appendHeaders(s, this.id, endStream ? Flag.END_STREAM : 0, KIND_RESPONSE, status, headers, '', '', '', '');
    if (endStream) {
      this.localEnded = true;
      this.localDone = true;
      closeIfDone(s, this);
    }
  }

  /**
   * Queues body bytes as DATA (sent at once as far as the windows allow). Returns false once more than 64 KiB
   * (or the peer's initial window, if larger, at most 1 MiB) waits unsent: onDrain follows. The chunk may be
   * held until sent (large chunks are written from it, not copied): callers must not reuse it.
   */
  write(chunk: Buffer): boolean {
    const s = this.session;
    if (this.closed || this.localEnded || s.dead) return false;
    const len = chunk.length;
    if (len === 0) return !this.needDrain;
    let off = 0;
    if (this.queueBytes === 0 && !outputFull(s)) {
      off = sendSome(s, this, chunk, 0);
      if (off === len) return true;
    }
    if (this.queue === EMPTY_QUEUE) this.queue = [];
    if (this.queueBytes === 0) {
      this.queue.length = 0;
      this.qIndex = 0;
      this.qOff = off;
    } else if (off !== 0) {
      chunk = chunk.subarray(off);
    }
    this.queue.push(chunk);
    this.queueBytes += len - off;
    if (!this.inSendList) {
      this.inSendList = true;
      s.sendList.push(this);
    }
    if (this.queueBytes > s.queueLimit) {
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** Ends our side: END_STREAM on the last DATA (after queued data), or trailers as HEADERS + END_STREAM. */
  end(trailers: HeaderMap | null): void {
    const s = this.session;
    if (this.closed || this.localEnded || s.dead) return;
    this.localEnded = true;
    if (trailers !== null) this.trailers = trailers;
    if (this.queueBytes === 0) emitEnd(s, this);
  }

  /** RST_STREAM with `code` (drops anything queued); no owner callback follows. Idempotent. */
  reset(code: number): void {
    const s = this.session;
    if (this.closed) return;
    if (!s.dead) appendRst(s, this.id, code, false);
    removeStream(s, this);
  }

  /** Receive-side backpressure: stop crediting this stream's window until resume(). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.recvOwed > 0 && !this.closed && !this.remoteEnded && !this.session.dead) creditStream(this.session, this);
  }
}

// ==== session ==============================================================================================

const KIND_RESPONSE = 0;
const KIND_REQUEST = 1;
const KIND_TRAILERS = 2;

export class H2Session {
  readonly socket: Socket;
  readonly isServer: boolean;
  owner: H2SessionOwner;
  readonly streams = new Map<number, H2Stream>();

  // --- ours
  readonly maxConcurrentStreams: number;
  readonly maxHeaderListSize: number;
  readonly maxHeaderCount: number;
  readonly localWindow: number;
  readonly connWindow: number;
  /** A new stream's receive window (the protocol's 65535 until the peer ACKs our SETTINGS, if ours is smaller). */
  streamRecvInitial: number;

  // --- the peer's
  peerMaxConcurrentStreams = 100;
  peerInitialWindow = DEFAULT_WINDOW;
  peerMaxFrame = MAX_FRAME;
  /** write() returns false past this many queued bytes: max(64 KiB, the peer's initial window), at most 1 MiB. */
  queueLimit = STREAM_QUEUE_LIMIT;
  connected = false;

  // --- flow control
  /** The peer's connection window for our DATA. */
  sendWindow = DEFAULT_WINDOW;
  /** What the peer may still send on the connection. */
  recvAvail: number;
  recvOwed = 0;

  // --- stream ids
  /** Client: the next id we open. */
  nextStreamId = 1;
  /** Highest stream id the peer opened (the GOAWAY last-stream-id we send). */
  lastPeerId = 0;
  peerActive = 0;
  streamsOpened = 0;

  // --- lifecycle
  /** The last CLOSED_MEMORY streams closed after the peer's END_STREAM (id) or RST_STREAM (-id); see closedHow. */
  closedIds: Int32Array | null = null;
  closedNext = 0;
  dead = false;
  goawaySent = false;
  goawayRecv = false;
  /** Server: streams above this id (after our GOAWAY) are ignored. */
  goawayLastId = MAX_STREAM_ID;
  /** Client: our streams above this id were refused by the peer's GOAWAY. */
  peerGoawayLastId = MAX_STREAM_ID;
  sentGoawayCode = -1;
  error: Error | null = null;
  closeReported = false;
  endTimer: NodeJS.Timeout | null = null;
  /** Running until the peer ACKs our SETTINGS. */
  settingsTimer: NodeJS.Timeout | null = null;
  lastActivityMs: number;

  // --- read state
  prefaceLeft: number;
  sawSettings = false;
  carry: Buffer | null = null;
  carryLen = 0;
  /** Stream whose header block is being assembled from CONTINUATIONs (0: none). */
  hdrStream = 0;
  hdrEndStream = false;
  hdrFrames = 0;
  hdrBuf: Buffer | null = null;
  hdrLen = 0;
  readonly hdrLimit: number;
  /** Frames per header block: MAX_HEADER_BLOCK_FRAMES, or what a block of hdrLimit bytes in 16 KiB frames needs. */
  readonly hdrFrameLimit: number;
  readonly decoder: HpackDecoder;
  readonly encoder = new HpackEncoder();
  /** The frame being processed, for the bug log. */
  frameType = -1;

  // --- limits
  /** Streams the peer reset soon after opening them, and streams we refused (see prematureReset). */
  prematureResets = 0;
  streamsRefused = 0;
  readonly resets: ResetBudget;
  emptyFrames = 0;
  priorityIn = 0;
  windowUpdatesIn = 0;
  dataFramesOut = 0;
  ctrlBacklog = 0;

  // --- write state
  /** This turn's frames; NO_OUT between turns (see outPool). */
  out: Buffer = NO_OUT;
  outLen = 0;
  flushScheduled = false;
  /** Large DATA payloads written from the caller's buffer; segAt[i]: the out offset they follow. */
  readonly segBufs: Buffer[] = [];
  readonly segAt: number[] = [];
  /** The socket holds more than SOCKET_HIGH_WATER unsent bytes: DATA waits in the stream queues for 'drain'. */
  backedUp = false;
  /** Bytes of large payloads referenced (not copied) this turn: with outLen, what this turn will write. */
  segBytes = 0;
  /** DATA waited because this turn's output was full (not the socket): flush schedules a pump for it. */
  turnFull = false;
  pumpScheduled = false;
  /** Where the last DATA frame in `out` starts (-1: none since the last flush), its stream and its end. */
  lastDataAt = -1;
  lastDataStream: H2Stream | null = null;
  lastDataEnd = -1;
  readonly sendList: H2Stream[] = [];
  readonly drainList: H2Stream[] = [];
  pumping = false;

  constructor(socket: Duplex, role: 'server' | 'client', options: H2SessionOptions, owner: H2SessionOwner) {
    this.socket = socket as Socket;
    this.isServer = role === 'server';
    this.owner = owner;
    this.maxConcurrentStreams = options.maxConcurrentStreams;
    this.maxHeaderListSize = options.maxHeaderListSize;
    this.maxHeaderCount = options.maxHeaderCount;
    this.localWindow = Math.min(options.initialWindowSize ?? DEFAULT_WINDOW, MAX_WINDOW);
    this.connWindow = Math.min(Math.max(options.connectionWindowSize ?? 1 << 20, DEFAULT_WINDOW), MAX_WINDOW);
    this.streamRecvInitial = Math.max(this.localWindow, DEFAULT_WINDOW);
    this.recvAvail = this.connWindow;
    this.hdrLimit = this.maxHeaderListSize + HEADER_BLOCK_SLACK;
    this.hdrFrameLimit = Math.max(MAX_HEADER_BLOCK_FRAMES, Math.ceil(this.hdrLimit / MAX_FRAME) + 1);
    this.decoder = new HpackDecoder(4096);
    this.prefaceLeft = this.isServer ? PREFACE.length : 0;
    this.lastActivityMs = performance.now();
    this.resets = new ResetBudget(this.lastActivityMs, RESET_BURST, RESETS_PER_SECOND);

    const sock = this.socket as SessionSocket;
    sock[kSession] = this;
    sock.on('data', onSocketData);
    sock.on('error', onSocketError);
    sock.on('end', onSocketEnd);
    sock.on('close', onSocketClose);
    sock.on('drain', onSocketDrain);
    if (sock.destroyed) {
      // Handed over already closed (the peer left while a sniffer read it): its 'close' has been emitted, so
      // end the session on the next tick, as if it came now (the owner's record must not leak).
      process.nextTick(closedAtStart, sock);
      return;
    }
    if (typeof sock.setNoDelay === 'function') sock.setNoDelay(true);
    sock.resume();
    writeOpening(this);
    const settingsMs = options.settingsTimeoutMs ?? SETTINGS_TIMEOUT_MS;
    if (settingsMs > 0) {
      this.settingsTimer = setTimeout(onSettingsTimeout, settingsMs, this, settingsMs);
      this.settingsTimer.unref();
    }
  }

  /** Client role: opens a stream; throws if the session cannot (callers check canOpen first). */
  request(
    method: string,
    scheme: string,
    authority: string,
    path: string,
    headers: HeaderMap,
    endStream: boolean,
    owner: H2StreamOwner,
  ): H2Stream {
    if (this.isServer) throw new Error('HTTP/2: request() on a server session');
    if (!this.canOpen) throw new Error('HTTP/2: the session is closing or closed and takes no new streams');
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = new H2Stream(this, id, owner, false);
    stream.noBody = method === 'HEAD';
    stream.sentHeaders = true;
    this.streams.set(id, stream);
    this.streamsOpened++;
    appendHeaders(this, id, endStream ? Flag.END_STREAM : 0, KIND_REQUEST, 0, headers, method, scheme, authority, path);
    if (endStream) {
      stream.localEnded = true;
      stream.localDone = true;
    }
    return stream;
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  get canOpen(): boolean {
    return !this.dead && !this.goawaySent && !this.goawayRecv && this.nextStreamId <= MAX_STREAM_ID;
  }

  /** Graceful: GOAWAY NO_ERROR with the last stream id we processed; the socket closes once open streams are done. */
  close(): void {
    if (this.dead || this.goawaySent) return;
    this.goawaySent = true;
    this.goawayLastId = this.lastPeerId;
    appendGoaway(this, this.lastPeerId, H2Error.NO_ERROR);
    maybeFinish(this);
  }

  /** At once: GOAWAY `code` if the socket is writable, every open stream gets onReset, socket destroyed. */
  destroy(code: number = H2Error.NO_ERROR, why?: string): void {
    if (this.dead) {
      this.socket.destroy(); // ended gracefully, lingering for the peer's close: no more waiting
      return;
    }
    if (code !== H2Error.NO_ERROR) this.error ??= new Error(why ?? `HTTP/2 session destroyed (${h2ErrorName(code)})`);
    if (!this.socket.destroyed) appendGoaway(this, this.lastPeerId, code);
    terminate(this, code === H2Error.NO_ERROR ? H2Error.CANCEL : code, why ?? 'the HTTP/2 session was destroyed');
    this.socket.destroy();
  }
}

/**
 * Connection-specific fields are forbidden in HTTP/2 (RFC 9113 §8.2.2: a peer treats them as malformed). Callers
 * strip hop-by-hop fields already; this makes sure none goes out (a copy only when one is present).
 */
function withoutConnectionSpecific(h: HeaderMap): HeaderMap {
  if (
    h.connection === undefined &&
    h['transfer-encoding'] === undefined &&
    h['keep-alive'] === undefined &&
    h['proxy-connection'] === undefined &&
    h.upgrade === undefined
  ) {
    return h;
  }
  const out = newHeaderMap();
  for (const name in h) {
    if (name === 'connection' || name === 'transfer-encoding' || name === 'keep-alive' || name === 'proxy-connection' || name === 'upgrade') continue;
    out[name] = h[name]!;
  }
  return out;
}

// ==== socket events (shared functions; `this` is the socket) ==============================================

function onSocketData(this: SessionSocket, chunk: Buffer): void {
  const s = this[kSession]!;
  if (s.dead) return;
  s.lastActivityMs = performance.now();
  try {
    readChunk(s, chunk);
  } catch (err) {
    internalError(s, err);
  }
}

function onSocketError(this: SessionSocket, err: Error): void {
  const s = this[kSession]!;
  s.error ??= err;
  terminate(s, H2Error.INTERNAL_ERROR, `connection error: ${err.message}`);
}

function onSocketEnd(this: SessionSocket): void {
  const s = this[kSession]!;
  // The peer's FIN: whatever allowHalfOpen says, finish writing and close.
  if (!s.dead) {
    if (s.streams.size > 0) s.error ??= new Error('the peer closed the HTTP/2 connection with streams open');
    terminate(s, H2Error.INTERNAL_ERROR, 'the peer closed the connection');
  }
  if (s.dead && !this.destroyed && this.writableFinished) this.destroy();
}

function onSocketClose(this: SessionSocket): void {
  const s = this[kSession]!;
  if (!s.dead) {
    if (s.streams.size > 0) s.error ??= new Error('the HTTP/2 connection closed with streams open');
    terminate(s, H2Error.INTERNAL_ERROR, 'the connection closed');
  }
  if (s.endTimer !== null) {
    clearTimeout(s.endTimer);
    s.endTimer = null;
  }
  if (s.closeReported) return;
  s.closeReported = true;
  try {
    s.owner.onSessionClose(s, s.error, s.sentGoawayCode);
  } catch (err) {
    logBugOnce(err, -1);
  }
}

function closedAtStart(sock: SessionSocket): void {
  onSocketClose.call(sock);
}

function onSocketDrain(this: SessionSocket): void {
  const s = this[kSession]!;
  s.backedUp = false;
  s.ctrlBacklog = 0;
  if (s.dead || s.sendList.length === 0) return;
  try {
    pump(s);
  } catch (err) {
    internalError(s, err);
  }
}

/**
 * Our FIN is out: close now if the peer's came too. Else, when our GOAWAY must be read (server role: the client
 * learns which requests were not processed; any connection error), its FIN ('end') or the grace timer closes
 * (lingering close: closing while the peer still sends answers it with RST, which can discard our GOAWAY
 * unread). A client's clean end closes at once.
 */
function onSocketFinish(this: SessionSocket): void {
  const s = this[kSession]!;
  if (this.readableEnded || (!s.isServer && s.sentGoawayCode < 0)) this.destroy();
}

function onSettingsTimeout(s: H2Session, ms: number): void {
  s.settingsTimer = null;
  connError(s, H2Error.SETTINGS_TIMEOUT, `the peer did not acknowledge our SETTINGS within ${ms} ms`);
}

function forceDestroy(s: H2Session): void {
  s.endTimer = null;
  s.socket.destroy();
}

// ==== ending ===============================================================================================

function internalError(s: H2Session, err: unknown): void {
  logBugOnce(err, s.frameType);
  s.error ??= err instanceof Error ? err : new Error(String(err));
  connError(s, H2Error.INTERNAL_ERROR, 'internal error in HTTP/2 frame processing');
}

/** A connection error (RFC 9113 §5.4.1): GOAWAY `code`, every stream reset, the socket closed. */
function connError(s: H2Session, code: number, why: string): void {
  if (s.dead) return;
  s.sentGoawayCode = code;
  s.error ??= new Error(`HTTP/2 connection error ${h2ErrorName(code)}: ${why}`);
  appendGoaway(s, s.lastPeerId, code);
  terminate(s, code, why);
}

/**
 * The session is over: streams get onReset, what is buffered is written, and the socket is ended; it is
 * destroyed once our FIN is out (or after END_GRACE_MS). We keep reading (and discarding) until then: closing
 * with unread input would send RST and could lose our GOAWAY. onSessionClose comes from 'close'.
 */
function terminate(s: H2Session, streamCode: number, why: string): void {
  if (s.dead) return;
  s.dead = true;
  if (s.settingsTimer !== null) {
    clearTimeout(s.settingsTimer);
    s.settingsTimer = null;
  }
  s.hdrBuf = null;
  s.carry = null;
  if (s.streams.size > 0) {
    for (const stream of s.streams.values()) markClosed(stream);
    // Owners see the streams closed already; one throwing owner must not spare the others their event.
    for (const stream of s.streams.values()) {
      const owner = stream.owner;
      if (owner === null) continue;
      try {
        owner.onReset(stream, streamCode, why);
      } catch (err) {
        logBugOnce(err, -1);
      }
    }
    s.streams.clear();
  }
  s.sendList.length = 0;
  flush(s);
  const sock = s.socket as SessionSocket;
  if (sock.destroyed) return;
  if (sock.readableEnded && sock.writableFinished) {
    sock.destroy();
    return;
  }
  sock.once('finish', onSocketFinish);
  sock.end();
  s.endTimer = setTimeout(forceDestroy, END_GRACE_MS, s);
  s.endTimer.unref();
}

/** After GOAWAY (either way) the session ends when its last stream does. */
function maybeFinish(s: H2Session): void {
  if (!s.dead && (s.goawaySent || s.goawayRecv) && s.streams.size === 0) terminate(s, H2Error.NO_ERROR, 'session closed');
}

// ==== write path ===========================================================================================

/** Reserves n bytes at the end of `out`, growing it, and schedules the flush of this loop turn. */
function reserve(s: H2Session, n: number): number {
  const at = s.outLen;
  if (s.out === NO_OUT) s.out = outPool.pop() ?? Buffer.allocUnsafe(OUT_START);
  if (at + n > s.out.length) grow(s, at + n, at);
  s.outLen = at + n;
  if (!s.flushScheduled) {
    s.flushScheduled = true;
    flushList.push(s);
    if (!flushAllScheduled) {
      flushAllScheduled = true;
      setImmediate(flushAll);
    }
  }
  return at;
}

/** Doubles `out` (or more) keeping its first `keep` bytes. */
function grow(s: H2Session, need: number, keep: number): void {
  const prev = s.out;
  let next: Buffer;
  if (need <= OUT_BIG && prev.length < OUT_BIG) {
    next = bigPool.pop() ?? Buffer.allocUnsafe(OUT_BIG);
  } else {
    let size = prev.length * 2;
    while (size < need) size *= 2;
    next = Buffer.allocUnsafe(size);
  }
  prev.copy(next, 0, 0, keep);
  s.out = next;
  releaseOut(prev); // never handed to the socket: nothing else references it
}

/**
 * Writes what this loop turn framed: one socket.write, or (with large DATA payloads written from the callers'
 * buffers) several inside cork/uncork, which Node sends as one writev. The buffer is reused when the kernel
 * took it all (writableLength 0: nothing references it any more), else a new one is started.
 */
function flush(s: H2Session): void {
  s.flushScheduled = false;
  const len = s.outLen;
  if (len === 0) return;
  const out = s.out;
  s.out = NO_OUT;
  s.outLen = 0;
  s.segBytes = 0;
  s.lastDataAt = -1;
  s.lastDataStream = null;
  const sock = s.socket;
  if (sock.destroyed || sock.writableEnded) {
    s.segBufs.length = 0;
    s.segAt.length = 0;
    releaseOut(out);
    return;
  }
  const segs = s.segBufs.length;
  if (segs === 0) {
    sock.write(out.subarray(0, len));
  } else {
    sock.cork();
    let prev = 0;
    for (let i = 0; i < segs; i++) {
      const at = s.segAt[i]!;
      if (at > prev) sock.write(out.subarray(prev, at));
      sock.write(s.segBufs[i]!);
      prev = at;
    }
    if (len > prev) sock.write(out.subarray(prev, len));
    sock.uncork();
    s.segBufs.length = 0;
    s.segAt.length = 0;
  }
  s.lastActivityMs = performance.now();
  const waiting = sock.writableLength;
  if (waiting === 0) releaseOut(out);
  // The control frame count runs on across turns only while the peer is SOCKET_HIGH_WATER behind: a reader a
  // little behind for minutes (some output always waiting) may send a BDP PING per burst without limit.
  if (waiting > SOCKET_HIGH_WATER) s.backedUp = true;
  else s.ctrlBacklog = 0;
  // DATA that waited only because this turn's output was full goes on after I/O had its turn ('drain' covers
  // the backed-up case).
  if (s.turnFull && !s.backedUp && !s.pumpScheduled) {
    s.turnFull = false;
    s.pumpScheduled = true;
    setImmediate(pumpLater, s);
  }
}

function releaseOut(out: Buffer): void {
  if (out.length === OUT_START) {
    if (outPool.length < OUT_POOL_MAX) outPool.push(out);
  } else if (out.length === OUT_BIG && bigPool.length < BIG_POOL_MAX) {
    bigPool.push(out);
  }
}

/** More DATA may go out when neither the socket nor this turn's output holds SOCKET_HIGH_WATER bytes. */
function outputFull(s: H2Session): boolean {
  if (s.backedUp) return true;
  if (s.outLen + s.segBytes <= SOCKET_HIGH_WATER) return false;
  s.turnFull = true;
  return true;
}

function pumpLater(s: H2Session): void {
  s.pumpScheduled = false;
  if (s.dead || s.backedUp || s.sendList.length === 0) return;
  try {
    pump(s);
  } catch (err) {
    internalError(s, err);
  }
}

function writeOpening(s: H2Session): void {
  const pre = s.isServer ? 0 : PREFACE.length;
  const at = reserve(s, pre + FRAME_HEADER + 3 * 6 + 13);
  const out = s.out;
  if (!s.isServer) PREFACE.copy(out, at);
  let p = at + pre + FRAME_HEADER;
  if (s.isServer) p = writeSetting(out, p, Setting.MAX_CONCURRENT_STREAMS, s.maxConcurrentStreams);
  else p = writeSetting(out, p, Setting.ENABLE_PUSH, 0);
  p = writeSetting(out, p, Setting.INITIAL_WINDOW_SIZE, s.localWindow);
  p = writeSetting(out, p, Setting.MAX_HEADER_LIST_SIZE, s.maxHeaderListSize);
  writeFrameHeader(out, at + pre, p - at - pre - FRAME_HEADER, FrameType.SETTINGS, 0, 0);
  const inc = s.connWindow - DEFAULT_WINDOW;
  if (inc > 0) p = writeWindowUpdate(out, p, 0, inc);
  s.outLen = p;
}

/**
 * Counts a control frame the PEER caused (PING/SETTINGS ACK, RST_STREAM for its errors or refused streams;
 * Envoy's max_outbound_control_frames, nghttp2's max_outbound_ack): those of one loop turn, and on while the
 * socket holds more than SOCKET_HIGH_WATER unsent. Loopback kernels absorb tens of MiB of ACKs, so "behind 1 MiB" alone never
 * triggered; no legitimate peer causes 1000 in one read. Our own stream.reset() calls are not counted: a proxy
 * cancelling many streams at once (an upstream gone) must not end its client's connection.
 */
function countControl(s: H2Session): void {
  if (++s.ctrlBacklog > MAX_OUTBOUND_CONTROL_FRAMES) {
    connError(s, H2Error.ENHANCE_YOUR_CALM, 'the peer does not read the control frames it causes (outbound control frame limit)');
  }
}

/** RST_STREAM; `peerCaused` counts it against the outbound control frame limit (see countControl). */
function appendRst(s: H2Session, id: number, code: number, peerCaused: boolean): void {
  const at = reserve(s, 13);
  writeRstStream(s.out, at, id, code);
  if (peerCaused) countControl(s);
}

function appendGoaway(s: H2Session, last: number, code: number): void {
  // Never above a GOAWAY we sent (RFC 9113 §6.8): streams the peer opened after it were ignored, and a higher
  // id would tell it they may have been processed, so it would not retry them.
  if (last > s.goawayLastId) last = s.goawayLastId;
  const at = reserve(s, 17);
  writeGoaway(s.out, at, last, code);
}

/**
 * Encodes a header block straight into `out` and frames it: HEADERS, plus CONTINUATIONs when it is larger
 * than the peer's frame size. The encoder leaves its table alone when the block does not fit, so we grow and
 * encode again.
 */
function appendHeaders(
  s: H2Session,
  id: number,
  flags: number,
  kind: number,
  status: number,
  headers: HeaderMap | null,
  method: string,
  scheme: string,
  authority: string,
  path: string,
): void {
  if (headers !== null) headers = withoutConnectionSpecific(headers);
  const at = reserve(s, FRAME_HEADER);
  const start = at + FRAME_HEADER;
  let end: number;
  for (;;) {
    if (kind === KIND_RESPONSE) end = s.encoder.encodeResponse(s.out, start, status, headers);
    else if (kind === KIND_REQUEST) end = s.encoder.encodeRequest(s.out, start, method, scheme, authority, path, headers!);
    else end = s.encoder.encodeTrailers(s.out, start, headers!);
    if (end >= 0) break;
    grow(s, s.out.length * 2, start);
  }
  const blockLen = end - start;
  const maxF = s.peerMaxFrame;
  if (blockLen <= maxF) {
    writeFrameHeader(s.out, at, blockLen, FrameType.HEADERS, flags | Flag.END_HEADERS, id);
    s.outLen = end;
    return;
  }
  // Split: shift each later piece right to make room for its CONTINUATION header, last piece first.
  const pieces = Math.ceil(blockLen / maxF);
  const extra = (pieces - 1) * FRAME_HEADER;
  if (end + extra > s.out.length) grow(s, end + extra, end);
  const out = s.out;
  for (let i = pieces - 1; i >= 1; i--) {
    const src = start + i * maxF;
    const srcEnd = Math.min(src + maxF, end);
    const dst = src + i * FRAME_HEADER;
    out.copyWithin(dst, src, srcEnd);
    writeFrameHeader(out, dst - FRAME_HEADER, srcEnd - src, FrameType.CONTINUATION, i === pieces - 1 ? Flag.END_HEADERS : 0, id);
  }
  writeFrameHeader(out, at, maxF, FrameType.HEADERS, flags, id);
  s.outLen = end + extra;
}

/** One DATA frame of chunk[start, start+n); large payloads are referenced, not copied. */
function emitData(s: H2Session, stream: H2Stream, chunk: Buffer, start: number, n: number, flags: number): void {
  let at: number;
  if (n >= ZERO_COPY_MIN) {
    at = reserve(s, FRAME_HEADER);
    s.segBufs.push(chunk.subarray(start, start + n));
    s.segAt.push(s.outLen);
    s.segBytes += n;
  } else {
    at = reserve(s, FRAME_HEADER + n);
    chunk.copy(s.out, at + FRAME_HEADER, start, start + n);
  }
  writeFrameHeader(s.out, at, n, FrameType.DATA, flags, stream.id);
  s.lastDataAt = at;
  s.lastDataStream = stream;
  s.lastDataEnd = s.outLen;
  stream.sendWindow -= n;
  s.sendWindow -= n;
  s.dataFramesOut++;
}

/** How much of `n` bytes the next DATA frame may carry: the stream and connection windows and the peer's frame size. */
function sendable(s: H2Session, stream: H2Stream, n: number): number {
  if (n > stream.sendWindow) n = stream.sendWindow;
  if (n > s.sendWindow) n = s.sendWindow;
  return n > s.peerMaxFrame ? s.peerMaxFrame : n;
}

/** Frames chunk[off..] as far as the windows and the socket allow; returns the new offset. */
function sendSome(s: H2Session, stream: H2Stream, chunk: Buffer, off: number): number {
  const len = chunk.length;
  while (off < len && !outputFull(s)) {
    const n = sendable(s, stream, len - off);
    if (n <= 0) break;
    emitData(s, stream, chunk, off, n, 0);
    off += n;
  }
  return off;
}

/** Our END_STREAM: trailers, or the END_STREAM flag set on our last DATA frame if it is still the last frame, or an empty DATA. */
function emitEnd(s: H2Session, stream: H2Stream): void {
  if (stream.trailers !== null) {
    const t = stream.trailers;
    stream.trailers = null;
    appendHeaders(s, stream.id, Flag.END_STREAM, KIND_TRAILERS, 0, t, '', '', '', '');
  } else if (s.lastDataStream === stream && s.lastDataEnd === s.outLen) {
    s.out[s.lastDataAt + 4]! |= Flag.END_STREAM;
  } else {
    const at = reserve(s, FRAME_HEADER);
    writeFrameHeader(s.out, at, 0, FrameType.DATA, Flag.END_STREAM, stream.id);
  }
  stream.localDone = true;
  closeIfDone(s, stream);
}

/** Sends queued DATA of one stream as the windows allow; true when its queue is empty. */
function drainQueue(s: H2Session, stream: H2Stream): boolean {
  const q = stream.queue;
  while (stream.queueBytes > 0) {
    if (outputFull(s)) return false;
    const chunk = q[stream.qIndex]!;
    const n = sendable(s, stream, chunk.length - stream.qOff);
    if (n <= 0) return false;
    emitData(s, stream, chunk, stream.qOff, n, 0);
    stream.qOff += n;
    stream.queueBytes -= n;
    if (stream.qOff === chunk.length) {
      stream.qIndex++;
      stream.qOff = 0;
    }
  }
  q.length = 0;
  stream.qIndex = 0;
  stream.qOff = 0;
  if (stream.localEnded && !stream.localDone) emitEnd(s, stream);
  return true;
}

/** Sends what waits for window or socket, then tells owners whose queues fell low (onDrain). */
function pump(s: H2Session): void {
  if (s.pumping || s.dead) return;
  s.pumping = true;
  const list = s.sendList;
  let keep = 0;
  for (let i = 0; i < list.length; i++) {
    const stream = list[i]!;
    if (stream.closed) {
      stream.inSendList = false;
      continue;
    }
    const blocked = outputFull(s) || s.sendWindow <= 0;
    if (!blocked && drainQueue(s, stream)) stream.inSendList = false;
    else list[keep++] = stream;
    if (stream.needDrain && stream.queueBytes <= s.queueLimit && !stream.closed) {
      stream.needDrain = false;
      s.drainList.push(stream);
    }
  }
  list.length = keep;
  s.pumping = false;
  const drains = s.drainList;
  if (drains.length === 0) return;
  for (let i = 0; i < drains.length; i++) {
    const stream = drains[i]!;
    if (!stream.closed && stream.owner !== null) stream.owner.onDrain(stream);
  }
  drains.length = 0;
}

function creditStream(s: H2Session, stream: H2Stream): void {
  const n = stream.recvOwed;
  stream.recvOwed = 0;
  stream.recvAvail += n;
  const at = reserve(s, 13);
  writeWindowUpdate(s.out, at, stream.id, n);
}

// ==== stream bookkeeping ===================================================================================

/** Closed: no more events, and what it had queued to send is dropped. */
function markClosed(stream: H2Stream): void {
  stream.closed = true;
  stream.queue = EMPTY_QUEUE;
  stream.queueBytes = 0;
  stream.trailers = null;
}

function removeStream(s: H2Session, stream: H2Stream): void {
  if (stream.closed && !s.streams.has(stream.id)) return;
  if (stream.remoteEnded) rememberClosed(s, stream.id);
  markClosed(stream);
  if (s.streams.delete(stream.id) && (stream.id & 1) === (s.isServer ? 1 : 0)) s.peerActive--;
  if (s.lastDataStream === stream) s.lastDataStream = null;
  maybeFinish(s);
}

/**
 * RFC 9113 §5.1: DATA or HEADERS on a closed stream is an error when the peer had ended it (END_STREAM: a
 * connection error; its own RST_STREAM: a stream error), but frames racing a reset of ours must be ignored. Like
 * nghttp2 we remember only a few recent closes, the ones where the peer had ended its side; a stream not
 * remembered is ignored (it may be one we reset, refused or answered early: the peer may not know yet).
 */
const CLOSED_MEMORY = 16;
const CLOSED_UNKNOWN = 0;
const CLOSED_BY_END = 1;
const CLOSED_BY_PEER_RESET = 2;

function rememberClosed(s: H2Session, signedId: number): void {
  const ids = (s.closedIds ??= new Int32Array(CLOSED_MEMORY));
  ids[s.closedNext] = signedId;
  s.closedNext = (s.closedNext + 1) % CLOSED_MEMORY;
}

function closedHow(s: H2Session, id: number): number {
  const ids = s.closedIds;
  if (ids === null) return CLOSED_UNKNOWN;
  for (let i = 0; i < CLOSED_MEMORY; i++) {
    if (ids[i] === id) return CLOSED_BY_END;
    if (ids[i] === -id) return CLOSED_BY_PEER_RESET;
  }
  return CLOSED_UNKNOWN;
}

/** DATA or HEADERS on stream `id`, closed and not idle: an error if the peer had ended it, else ignored. */
function onClosedStream(s: H2Session, id: number, what: string): void {
  const how = closedHow(s, id);
  if (how === CLOSED_BY_END) connError(s, H2Error.STREAM_CLOSED, `${what} on stream ${id} after its END_STREAM`);
  else if (how === CLOSED_BY_PEER_RESET) appendRst(s, id, H2Error.STREAM_CLOSED, true);
}

function closeIfDone(s: H2Session, stream: H2Stream): void {
  if (!stream.localDone || stream.closed) return;
  if (stream.remoteEnded) removeStream(s, stream);
  else if (s.isServer) {
    // Our response is complete, the request is not: RST_STREAM NO_ERROR after our END_STREAM asks the client
    // to stop sending (RFC 9113 §8.1, as Envoy and nghttp2 do); what it sent meanwhile is ignored as closed.
    appendRst(s, stream.id, H2Error.NO_ERROR, false);
    removeStream(s, stream);
  }
}

/** A stream error we raise (RFC 9113 §5.4.2): RST_STREAM to the peer, onReset to the owner. */
function streamError(s: H2Session, stream: H2Stream, code: number, why: string): void {
  if (stream.closed) return;
  appendRst(s, stream.id, code, true);
  removeStream(s, stream);
  if (stream.owner !== null) stream.owner.onReset(stream, code, why);
}

/** A stream we never opened for the owner (refused or malformed): RST_STREAM, counted as a premature reset. */
function refuse(s: H2Session, id: number, code: number): void {
  appendRst(s, id, code, true);
  s.streamsRefused++;
  prematureReset(s, 'too many streams refused (rapid reset)');
}

/**
 * Rapid reset (CVE-2023-44487). A stream the peer resets within PREMATURE_RESET_MS of opening it, or one we
 * refuse, is premature. The connection ends when both say flood: nghttp2's rate bucket is empty (1000, then
 * 33/s) and premature resets are half of the streams the peer started (Envoy's rule, counted from
 * PREMATURE_RESET_STREAMS streams on). The bucket alone ended busy gRPC connections that cancel a share of their
 * calls (deadlines, hedging) faster than 33/s; the ratio alone ended clients that abandon most of a short burst.
 * An open-and-reset flood meets both after ~1000 streams.
 */
function prematureReset(s: H2Session, why: string): void {
  const premature = ++s.prematureResets;
  if (s.resets.tryTake(s.lastActivityMs)) return;
  const started = s.streamsOpened + s.streamsRefused;
  if (premature * 2 >= Math.max(started, PREMATURE_RESET_STREAMS)) connError(s, H2Error.ENHANCE_YOUR_CALM, why);
}

/** Server role: a malformed request head gets RST_STREAM PROTOCOL_ERROR, reported as a bad_request answer. */
function refuseMalformed(s: H2Session, id: number): void {
  if (s.owner.onRefusedHead !== undefined) s.owner.onRefusedHead(s, REASONS.badRequest);
  refuse(s, id, H2Error.PROTOCOL_ERROR);
}

/** Is `id` a stream nobody has opened yet (RFC 9113 §5.1 "idle")? */
function isIdle(s: H2Session, id: number): boolean {
  if ((id & 1) === (s.isServer ? 1 : 0)) return id > s.lastPeerId;
  return id >= s.nextStreamId;
}

// ==== read path ============================================================================================

/**
 * Parses frames straight from the socket's chunk; only a partial frame's bytes are copied (into a fresh buffer
 * per frame). DATA payloads reach owners as subarray views of these chunks: Node never reuses a socket's 'data'
 * chunk (no `onread` buffer is configured), and the carry buffers are fresh, so the views stay valid.
 */
function readChunk(s: H2Session, chunk: Buffer): void {
  const len = chunk.length;
  let off = 0;
  if (s.prefaceLeft > 0) {
    const from = PREFACE.length - s.prefaceLeft;
    const n = Math.min(s.prefaceLeft, len);
    if (chunk.compare(PREFACE, from, from + n, 0, n) !== 0) {
      connError(s, H2Error.PROTOCOL_ERROR, 'the connection did not start with the HTTP/2 client preface');
      return;
    }
    s.prefaceLeft -= n;
    off = n;
    if (s.prefaceLeft > 0) return;
  }
  if (s.carry !== null) {
    off = fillCarry(s, chunk, off);
    if (off < 0 || s.dead) return;
  }
  while (len - off >= FRAME_HEADER) {
    const flen = readFrameLength(chunk, off);
    if (flen > MAX_FRAME) return frameTooLarge(s, flen);
    if (len - off < FRAME_HEADER + flen) break;
    processFrame(s, chunk, off, flen);
    if (s.dead) return;
    off += FRAME_HEADER + flen;
  }
  if (off < len) {
    const rest = len - off;
    if (rest >= FRAME_HEADER) {
      s.carry = Buffer.allocUnsafe(FRAME_HEADER + readFrameLength(chunk, off));
    } else {
      s.carry = Buffer.allocUnsafe(FRAME_HEADER);
    }
    chunk.copy(s.carry, 0, off, len);
    s.carryLen = rest;
  }
}

function frameTooLarge(s: H2Session, flen: number): void {
  connError(s, H2Error.FRAME_SIZE_ERROR, `a frame of ${flen} bytes is over our SETTINGS_MAX_FRAME_SIZE (${MAX_FRAME})`);
}

/** Completes the carried partial frame from `chunk`; returns the offset after what it took, -1 if it needs more. */
function fillCarry(s: H2Session, chunk: Buffer, off: number): number {
  const len = chunk.length;
  let carry = s.carry!;
  if (s.carryLen < FRAME_HEADER) {
    const take = Math.min(FRAME_HEADER - s.carryLen, len - off);
    chunk.copy(carry, s.carryLen, off, off + take);
    s.carryLen += take;
    off += take;
    if (s.carryLen < FRAME_HEADER) return -1;
    const flen = readFrameLength(carry, 0);
    if (flen > MAX_FRAME) {
      frameTooLarge(s, flen);
      return -1;
    }
    if (flen > 0) {
      const full = Buffer.allocUnsafe(FRAME_HEADER + flen);
      carry.copy(full, 0, 0, FRAME_HEADER);
      s.carry = carry = full;
    }
  }
  const take = Math.min(carry.length - s.carryLen, len - off);
  chunk.copy(carry, s.carryLen, off, off + take);
  s.carryLen += take;
  off += take;
  if (s.carryLen < carry.length) return -1;
  s.carry = null;
  s.carryLen = 0;
  processFrame(s, carry, 0, carry.length - FRAME_HEADER);
  return off;
}

function processFrame(s: H2Session, buf: Buffer, off: number, flen: number): void {
  const type = buf[off + 3]!;
  const flags = buf[off + 4]!;
  const id = buf.readUInt32BE(off + 5) & 0x7fffffff;
  s.frameType = type;
  if (s.hdrStream !== 0 && type !== FrameType.CONTINUATION) {
    connError(s, H2Error.PROTOCOL_ERROR, 'a header block was interrupted by another frame (CONTINUATION expected)');
    return;
  }
  if (!s.sawSettings && type !== FrameType.SETTINGS) {
    connError(s, H2Error.PROTOCOL_ERROR, 'the first frame was not SETTINGS');
    return;
  }
  const p = off + FRAME_HEADER;
  switch (type) {
    case FrameType.DATA:
      onDataFrame(s, buf, p, flen, flags, id);
      return;
    case FrameType.HEADERS:
      onHeadersFrame(s, buf, p, flen, flags, id);
      return;
    case FrameType.CONTINUATION:
      onContinuation(s, buf, p, flen, flags, id);
      return;
    case FrameType.RST_STREAM:
      onRstStream(s, buf, p, flen, id);
      return;
    case FrameType.SETTINGS:
      onSettings(s, buf, p, flen, flags, id);
      return;
    case FrameType.PING:
      if (flen !== 8) return connError(s, H2Error.FRAME_SIZE_ERROR, 'PING payload is not 8 bytes');
      if (id !== 0) return connError(s, H2Error.PROTOCOL_ERROR, 'PING on a stream');
      if ((flags & Flag.ACK) === 0) {
        const at = reserve(s, 17);
        writePingAck(s.out, at, buf, p);
        countControl(s);
      }
      return;
    case FrameType.GOAWAY:
      onGoawayFrame(s, buf, p, flen, id);
      return;
    case FrameType.WINDOW_UPDATE:
      onWindowUpdate(s, buf, p, flen, id);
      return;
    case FrameType.PRIORITY:
      // Ignored (RFC 9113 §5.3.2 allows it), but validated and counted.
      if (id === 0) return connError(s, H2Error.PROTOCOL_ERROR, 'PRIORITY on stream 0');
      if (flen !== 5) return connError(s, H2Error.FRAME_SIZE_ERROR, 'PRIORITY payload is not 5 bytes');
      if (++s.priorityIn > PRIORITY_PER_STREAM * (s.streamsOpened + 1)) {
        connError(s, H2Error.ENHANCE_YOUR_CALM, 'too many PRIORITY frames (PRIORITY flood)');
      }
      return;
    case FrameType.PUSH_PROMISE:
      connError(s, H2Error.PROTOCOL_ERROR, s.isServer ? 'PUSH_PROMISE from a client' : 'PUSH_PROMISE although we sent ENABLE_PUSH 0');
      return;
    default:
      return; // unknown frame types are ignored (RFC 9113 §4.1)
  }
}

function onDataFrame(s: H2Session, buf: Buffer, p: number, flen: number, flags: number, id: number): void {
  if (id === 0) return connError(s, H2Error.PROTOCOL_ERROR, 'DATA on stream 0');
  let start = p;
  let end = p + flen;
  if ((flags & Flag.PADDED) !== 0) {
    if (flen < 1) return connError(s, H2Error.FRAME_SIZE_ERROR, 'padded DATA without its pad length');
    const pad = buf[p]!;
    start++;
    if (pad > end - start) return connError(s, H2Error.PROTOCOL_ERROR, 'DATA padding longer than the frame');
    end -= pad;
  }
  // The connection window counts the whole payload, padding included, and is credited at once.
  if (flen > s.recvAvail) return connError(s, H2Error.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
  s.recvAvail -= flen;
  s.recvOwed += flen;
  if (s.recvOwed >= s.connWindow >>> 1) {
    const n = s.recvOwed;
    s.recvOwed = 0;
    s.recvAvail += n;
    const at = reserve(s, 13);
    writeWindowUpdate(s.out, at, 0, n);
  }
  const dataLen = end - start;
  const endStream = (flags & Flag.END_STREAM) !== 0;
  if (dataLen === 0 && !endStream) {
    if (++s.emptyFrames > MAX_EMPTY_FRAMES) return connError(s, H2Error.ENHANCE_YOUR_CALM, 'too many empty frames (empty DATA flood)');
  } else {
    s.emptyFrames = 0;
  }
  const stream = s.streams.get(id);
  if (stream === undefined) {
    if (isIdle(s, id)) connError(s, H2Error.PROTOCOL_ERROR, 'DATA on an idle stream');
    else onClosedStream(s, id, 'DATA');
    return;
  }
  if (stream.remoteEnded) return streamError(s, stream, H2Error.STREAM_CLOSED, 'DATA after END_STREAM');
  if (!stream.gotHead) return streamError(s, stream, H2Error.PROTOCOL_ERROR, 'DATA before the response head');
  if (flen > stream.recvAvail) return streamError(s, stream, H2Error.FLOW_CONTROL_ERROR, 'DATA beyond the stream window');
  stream.recvAvail -= flen;
  stream.recvOwed += flen - dataLen;
  stream.received += dataLen;
  const cl = stream.contentLength;
  if (cl >= 0 && (stream.received > cl || (endStream && stream.received !== cl))) {
    // Malformed (RFC 9113 §8.1.1): from an upstream a protocol error (502, or the response cut), not a reset.
    stream.malformed = true;
    return streamError(s, stream, H2Error.PROTOCOL_ERROR, `body length differs from content-length ${cl}`);
  }
  const owner = stream.owner;
  if (dataLen > 0) {
    if (owner !== null) owner.onData(stream, buf.subarray(start, end));
    if (stream.closed || s.dead) return;
    stream.recvOwed += dataLen;
  }
  if (endStream) {
    stream.remoteEnded = true;
    if (owner !== null) owner.onEnd(stream, null);
    closeIfDone(s, stream);
  } else if (!stream.paused && stream.recvOwed >= s.localWindow >>> 1) {
    creditStream(s, stream);
  }
}

function onHeadersFrame(s: H2Session, buf: Buffer, p: number, flen: number, flags: number, id: number): void {
  if (id === 0) return connError(s, H2Error.PROTOCOL_ERROR, 'HEADERS on stream 0');
  let start = p;
  let end = p + flen;
  if ((flags & Flag.PADDED) !== 0) {
    if (flen < 1) return connError(s, H2Error.FRAME_SIZE_ERROR, 'padded HEADERS without its pad length');
    const pad = buf[p]!;
    start++;
    if (pad > end - start) return connError(s, H2Error.PROTOCOL_ERROR, 'HEADERS padding longer than the frame');
    end -= pad;
  }
  if ((flags & Flag.PRIORITY) !== 0) {
    if (end - start < 5) return connError(s, H2Error.FRAME_SIZE_ERROR, 'HEADERS too short for its priority fields');
    start += 5;
  }
  const endStream = (flags & Flag.END_STREAM) !== 0;
  if (end === start && !endStream) {
    if (++s.emptyFrames > MAX_EMPTY_FRAMES) return connError(s, H2Error.ENHANCE_YOUR_CALM, 'too many empty frames (empty HEADERS flood)');
  } else {
    s.emptyFrames = 0;
  }
  if ((flags & Flag.END_HEADERS) !== 0) {
    onHeaderBlock(s, id, buf, start, end, endStream);
    return;
  }
  // A block continued in CONTINUATION frames: copied into hdrBuf, bounded in bytes and frames.
  s.hdrStream = id;
  s.hdrEndStream = endStream;
  s.hdrFrames = 1;
  s.hdrLen = 0;
  appendFragment(s, buf, start, end);
}

function appendFragment(s: H2Session, buf: Buffer, start: number, end: number): void {
  const n = end - start;
  const need = s.hdrLen + n;
  if (need > s.hdrLimit) {
    connError(s, H2Error.ENHANCE_YOUR_CALM, 'a header block grew past the header list limit (CONTINUATION flood)');
    return;
  }
  let hb = s.hdrBuf;
  if (hb === null || hb.length < need) {
    let size = hb === null ? 16_384 : hb.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(Math.min(size, s.hdrLimit));
    if (hb !== null) hb.copy(next, 0, 0, s.hdrLen);
    s.hdrBuf = hb = next;
  }
  buf.copy(hb, s.hdrLen, start, end);
  s.hdrLen = need;
}

function onContinuation(s: H2Session, buf: Buffer, p: number, flen: number, flags: number, id: number): void {
  if (s.hdrStream === 0 || id !== s.hdrStream) return connError(s, H2Error.PROTOCOL_ERROR, 'CONTINUATION without a header block in progress on its stream');
  if (++s.hdrFrames > s.hdrFrameLimit) {
    return connError(s, H2Error.ENHANCE_YOUR_CALM, `a header block of more than ${s.hdrFrameLimit} frames (CONTINUATION flood)`);
  }
  if (flen === 0 && (flags & Flag.END_HEADERS) === 0) {
    if (++s.emptyFrames > MAX_EMPTY_FRAMES) return connError(s, H2Error.ENHANCE_YOUR_CALM, 'too many empty frames (empty CONTINUATION flood)');
  }
  appendFragment(s, buf, p, p + flen);
  if (s.dead || (flags & Flag.END_HEADERS) === 0) return;
  s.hdrStream = 0;
  const block = s.hdrBuf!;
  s.hdrBuf = null; // CONTINUATIONs are rare: no assembly buffer kept per connection
  onHeaderBlock(s, id, block, 0, s.hdrLen, s.hdrEndStream);
}

/** Decodes a block; an HPACK violation is a connection error (the tables are out of sync). -1 then. */
function decodeBlock(s: H2Session, buf: Buffer, start: number, end: number, head: DecodedHead): number {
  try {
    return s.decoder.decode(buf, start, end, s.maxHeaderListSize, s.maxHeaderCount, head);
  } catch (err) {
    if (!(err instanceof HpackError)) throw err;
    connError(s, H2Error.COMPRESSION_ERROR, `HPACK: ${err.message}`);
    return -1;
  }
}

function onHeaderBlock(s: H2Session, id: number, buf: Buffer, start: number, end: number, endStream: boolean): void {
  const stream = s.streams.get(id);
  if (stream === undefined) {
    if (s.isServer) {
      if ((id & 1) === 0) return connError(s, H2Error.PROTOCOL_ERROR, `HEADERS on stream ${id}: client streams are odd`);
      if (id > s.lastPeerId) {
        s.lastPeerId = id;
        newPeerStream(s, id, buf, start, end, endStream);
        return;
      }
    } else {
      if ((id & 1) === 0) return connError(s, H2Error.PROTOCOL_ERROR, `HEADERS on server stream ${id} (push is disabled)`);
      if (id >= s.nextStreamId) return connError(s, H2Error.PROTOCOL_ERROR, `HEADERS on stream ${id} that we never opened`);
    }
    // A closed stream: keep HPACK in sync; ignored unless the peer had ended it.
    if (decodeBlock(s, buf, start, end, new DecodedHead()) >= 0) onClosedStream(s, id, 'HEADERS');
    return;
  }
  const head = new DecodedHead();
  const r = decodeBlock(s, buf, start, end, head);
  if (r < 0) return;
  if (stream.remoteEnded) return streamError(s, stream, H2Error.STREAM_CLOSED, 'HEADERS after END_STREAM');
  if (!stream.gotHead) {
    responseHead(s, stream, head, r, endStream);
    return;
  }
  // Trailers: END_STREAM, no pseudo headers.
  if (!endStream) return streamError(s, stream, H2Error.PROTOCOL_ERROR, 'a second header block without END_STREAM');
  if (r === HPACK_TOO_LARGE) return streamError(s, stream, H2Error.PROTOCOL_ERROR, 'trailers too large');
  if (head.malformed !== '' || hasPseudo(head)) {
    stream.malformed = true;
    // Server role: a malformed request, counted with the malformed heads (bad_request).
    if (s.isServer && s.owner.onRefusedHead !== undefined) s.owner.onRefusedHead(s, REASONS.badRequest);
    return streamError(s, stream, H2Error.PROTOCOL_ERROR, `malformed trailers: ${head.malformed || 'pseudo header'}`);
  }
  if (stream.contentLength >= 0 && stream.received !== stream.contentLength) {
    stream.malformed = true;
    return streamError(s, stream, H2Error.PROTOCOL_ERROR, `body length differs from content-length ${stream.contentLength}`);
  }
  stream.remoteEnded = true;
  if (stream.owner !== null) stream.owner.onEnd(stream, head.headers);
  closeIfDone(s, stream);
}

function hasPseudo(h: DecodedHead): boolean {
  return h.method !== '' || h.path !== '' || h.scheme !== '' || h.authority !== '' || h.protocol !== '' || h.status !== 0;
}

/** Server role: a request head on a new stream. */
function newPeerStream(s: H2Session, id: number, buf: Buffer, start: number, end: number, endStream: boolean): void {
  const head = new DecodedHead();
  const r = decodeBlock(s, buf, start, end, head);
  if (r < 0) return;
  if (id > s.goawayLastId) return; // after our GOAWAY: ignored (RFC 9113 §6.8)
  if (r === HPACK_TOO_LARGE) {
    appendHeaders(s, id, Flag.END_STREAM, KIND_RESPONSE, REASONS.headersTooLarge.httpStatus, TOO_LARGE_HEADERS, '', '', '', '');
    if (!endStream) appendRst(s, id, H2Error.NO_ERROR, true);
    if (s.owner.onRefusedHead !== undefined) s.owner.onRefusedHead(s, REASONS.headersTooLarge);
    return;
  }
  if (head.malformed !== '' || !validRequest(head)) return refuseMalformed(s, id);
  if (s.peerActive >= s.maxConcurrentStreams) return refuse(s, id, H2Error.REFUSED_STREAM);
  const cl = contentLength(head.headers['content-length']);
  if (cl === -2 || (endStream && cl > 0)) return refuseMalformed(s, id);
  const stream = new H2Stream(s, id, null, true);
  stream.contentLength = cl;
  stream.remoteEnded = endStream;
  s.streams.set(id, stream);
  s.peerActive++;
  s.streamsOpened++;
  stream.openedAtMs = s.lastActivityMs;
  s.owner.onStream(s, stream, head, endStream);
}

function validRequest(h: DecodedHead): boolean {
  if (h.protocol !== '' || h.status !== 0 || h.method === '') return false;
  const host = h.headers.host;
  if (host !== undefined && hostInvalid(host)) return false;
  if (h.method === 'CONNECT') return h.authority !== '' && h.scheme === '' && h.path === '';
  return h.scheme !== '' && h.path !== '';
}

/** Client role: the response head (1xx skipped). */
function responseHead(s: H2Session, stream: H2Stream, head: DecodedHead, r: number, endStream: boolean): void {
  if (r === HPACK_TOO_LARGE) {
    // A protocol error as Envoy has it (UPE, 502), not a reset: the pool reports it as malformed.
    stream.malformed = true;
    return streamError(s, stream, H2Error.PROTOCOL_ERROR, 'response headers too large');
  }
  const status = head.status;
  if (head.malformed !== '' || status < 100 || status > 999 || head.method !== '' || head.path !== '' || head.scheme !== '' || head.authority !== '' || head.protocol !== '') {
    stream.malformed = true;
    return streamError(s, stream, H2Error.PROTOCOL_ERROR, `malformed response head: ${head.malformed || 'bad pseudo headers'}`);
  }
  if (status < 200) {
    // A 1xx ending the stream, or a 101 (no Upgrade in HTTP/2), is a malformed response (RFC 9113 §8.1.1, §8.6).
    if (endStream || status === 101) {
      stream.malformed = true;
      return streamError(s, stream, H2Error.PROTOCOL_ERROR, `malformed response head: ${status} informational response`);
    }
    return;
  }
  stream.gotHead = true;
  if (!stream.noBody && status !== 204 && status !== 304) {
    const cl = contentLength(head.headers['content-length']);
    if (cl === -2 || (endStream && cl > 0)) {
      stream.malformed = true;
      return streamError(s, stream, H2Error.PROTOCOL_ERROR, 'malformed response head: content-length');
    }
    stream.contentLength = cl;
  }
  if (endStream) stream.remoteEnded = true;
  if (stream.owner !== null) stream.owner.onHead(stream, head, endStream);
  if (endStream) closeIfDone(s, stream);
}

/** content-length as a number: -1 absent, -2 invalid (repeated copies must agree). */
function contentLength(v: string | string[] | undefined): number {
  if (v === undefined) return -1;
  if (typeof v !== 'string') {
    const first = contentLength(v[0]);
    for (let i = 1; i < v.length; i++) if (v[i] !== v[0]) return -2;
    return first;
  }
  const n = v.length;
  if (n === 0 || n > 15) return -2;
  let x = 0;
  for (let i = 0; i < n; i++) {
    const c = v.charCodeAt(i) - 48;
    if (c < 0 || c > 9) return -2;
    x = x * 10 + c;
  }
  return x;
}

function onRstStream(s: H2Session, buf: Buffer, p: number, flen: number, id: number): void {
  if (flen !== 4) return connError(s, H2Error.FRAME_SIZE_ERROR, 'RST_STREAM payload is not 4 bytes');
  if (id === 0) return connError(s, H2Error.PROTOCOL_ERROR, 'RST_STREAM on stream 0');
  const stream = s.streams.get(id);
  if (stream === undefined) {
    if (isIdle(s, id)) connError(s, H2Error.PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
    return;
  }
  const code = buf.readUInt32BE(p);
  const premature = s.isServer && s.lastActivityMs - stream.openedAtMs < PREMATURE_RESET_MS;
  if (!stream.remoteEnded) rememberClosed(s, -id);
  removeStream(s, stream);
  if (stream.owner !== null) stream.owner.onReset(stream, code, `the peer reset the stream (${h2ErrorName(code)})`);
  if (premature) prematureReset(s, 'too many streams reset soon after they were opened (rapid reset)');
}

function onSettings(s: H2Session, buf: Buffer, p: number, flen: number, flags: number, id: number): void {
  if (id !== 0) return connError(s, H2Error.PROTOCOL_ERROR, 'SETTINGS on a stream');
  if ((flags & Flag.ACK) !== 0) {
    if (flen !== 0) return connError(s, H2Error.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
    if (s.settingsTimer !== null) {
      clearTimeout(s.settingsTimer);
      s.settingsTimer = null;
    }
    s.streamRecvInitial = s.localWindow; // the peer applies our window from now on
    return;
  }
  if (flen % 6 !== 0) return connError(s, H2Error.FRAME_SIZE_ERROR, 'SETTINGS payload is not a multiple of 6 bytes');
  let maxChanged = false;
  let windowGrew = false;
  for (let q = p, end = p + flen; q < end; q += 6) {
    const key = buf.readUInt16BE(q);
    const value = buf.readUInt32BE(q + 2);
    switch (key) {
      case Setting.HEADER_TABLE_SIZE:
        s.encoder.setPeerMaxTableSize(value);
        break;
      case Setting.ENABLE_PUSH:
        if (value > 1 || (!s.isServer && value !== 0)) return connError(s, H2Error.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value}`);
        break;
      case Setting.MAX_CONCURRENT_STREAMS:
        if (value !== s.peerMaxConcurrentStreams) maxChanged = true;
        s.peerMaxConcurrentStreams = value;
        break;
      case Setting.INITIAL_WINDOW_SIZE: {
        if (value > MAX_WINDOW) return connError(s, H2Error.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value} is over 2^31-1`);
        const delta = value - s.peerInitialWindow;
        s.peerInitialWindow = value;
        s.queueLimit = Math.min(Math.max(STREAM_QUEUE_LIMIT, value), STREAM_QUEUE_MAX);
        if (delta === 0) break;
        if (delta > 0) windowGrew = true;
        for (const stream of s.streams.values()) {
          stream.sendWindow += delta;
          if (stream.sendWindow > MAX_WINDOW) return connError(s, H2Error.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window');
        }
        break;
      }
      case Setting.MAX_FRAME_SIZE:
        if (value < MAX_FRAME || value > 0xffffff) return connError(s, H2Error.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value}`);
        s.peerMaxFrame = value;
        break;
      default:
        break; // MAX_HEADER_LIST_SIZE is advisory; unknown settings are ignored (RFC 9113 §6.5.2)
    }
  }
  const at = reserve(s, FRAME_HEADER);
  writeSettingsAck(s.out, at);
  countControl(s);
  if (s.dead) return;
  const first = !s.sawSettings;
  s.sawSettings = true;
  if (!s.isServer) {
    s.connected = true;
    if (first || maxChanged) s.owner.onRemoteSettings(s);
  }
  if (windowGrew && s.sendList.length > 0) pump(s);
}

function onGoawayFrame(s: H2Session, buf: Buffer, p: number, flen: number, id: number): void {
  if (id !== 0) return connError(s, H2Error.PROTOCOL_ERROR, 'GOAWAY on a stream');
  if (flen < 8) return connError(s, H2Error.FRAME_SIZE_ERROR, 'GOAWAY shorter than 8 bytes');
  const last = buf.readUInt32BE(p) & 0x7fffffff;
  const code = buf.readUInt32BE(p + 4);
  s.goawayRecv = true;
  if (last < s.peerGoawayLastId) s.peerGoawayLastId = last;
  if (code !== H2Error.NO_ERROR) s.error ??= new Error(`the peer sent GOAWAY ${h2ErrorName(code)}`);
  // Our streams the peer never processed: refused, safe to retry elsewhere.
  const ours = s.isServer ? 0 : 1;
  for (const stream of s.streams.values()) {
    if ((stream.id & 1) !== ours || stream.id <= last) continue;
    markClosed(stream);
    s.streams.delete(stream.id);
    if (s.lastDataStream === stream) s.lastDataStream = null;
    if (stream.owner !== null) stream.owner.onReset(stream, H2Error.REFUSED_STREAM, 'refused by the peer\'s GOAWAY');
    if (s.dead) return;
  }
  s.owner.onGoaway(s, code, last);
  maybeFinish(s);
}

function onWindowUpdate(s: H2Session, buf: Buffer, p: number, flen: number, id: number): void {
  if (flen !== 4) return connError(s, H2Error.FRAME_SIZE_ERROR, 'WINDOW_UPDATE payload is not 4 bytes');
  // Envoy's budget: every stream opened may draw one (gRPC C-core sends a stream WINDOW_UPDATE per new stream).
  if (++s.windowUpdatesIn > (s.dataFramesOut * WINDOW_UPDATES_PER_DATA + s.streamsOpened) * 2 + WINDOW_UPDATE_SLACK) {
    return connError(s, H2Error.ENHANCE_YOUR_CALM, 'too many WINDOW_UPDATE frames for the DATA we sent (WINDOW_UPDATE flood)');
  }
  const inc = buf.readUInt32BE(p) & 0x7fffffff;
  if (id === 0) {
    if (inc === 0) return connError(s, H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0 on the connection');
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) return connError(s, H2Error.FLOW_CONTROL_ERROR, 'WINDOW_UPDATE overflows the connection window');
    if (s.sendList.length > 0) pump(s);
    return;
  }
  const stream = s.streams.get(id);
  if (stream === undefined) {
    if (isIdle(s, id)) connError(s, H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
    return;
  }
  if (inc === 0) return streamError(s, stream, H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
  stream.sendWindow += inc;
  if (stream.sendWindow > MAX_WINDOW) return streamError(s, stream, H2Error.FLOW_CONTROL_ERROR, 'WINDOW_UPDATE overflows the stream window');
  if (stream.inSendList) pump(s);
}

export { DecodedHead } from './hpack.js';
