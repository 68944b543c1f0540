// One HTTP/2 connection (RFC 9113), server or client role, without node:http2: framing, flow control, the
// stream state machine and the abuse limits of limits.ts. Events go to owner objects (methods, no closures, no
// EventEmitter per stream); the frames of one loop turn leave in ONE socket write (see flush()).
//
// The session's parts: stream.ts (H2Stream), output.ts (write path), input.ts (read path), lifecycle.ts (how
// streams and the session end).
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { Reason } from '../reasons.js';
import type { HeaderMap } from '../http/headers.js';
import { type DecodedHead, HpackDecoder, HpackEncoder } from './hpack.js';
import { DEFAULT_WINDOW, Flag, MAX_FRAME, MAX_WINDOW, PREFACE } from './frames.js';
import { HEADER_BLOCK_SLACK, MAX_HEADER_BLOCK_FRAMES, RESET_BURST, RESETS_PER_SECOND } from './limits.js';
import { ResetBudget } from '../upstream/reset-budget.js';
import { H2Error, h2ErrorName } from './errors.js';
import { logBugOnce } from './log.js';
import { kSession, type SessionSocket } from './session-socket.js';
import { H2Stream, STREAM_QUEUE_LIMIT, type H2StreamOwner } from './stream.js';
import { appendGoaway, appendHeaders, KIND_REQUEST, NO_OUT, pump, writeOpening } from './output.js';
import { readChunk } from './input.js';
import { connError, internalError, maybeFinish, terminate } from './lifecycle.js';

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

/**
 * A peer that never ACKs our SETTINGS may never apply them (our window, header list size, stream limit): the
 * connection ends with SETTINGS_TIMEOUT after this long (RFC 9113 §6.5.3; nghttpx, Envoy/oghttp2 likewise).
 */
const SETTINGS_TIMEOUT_MS = 10_000;
/** Client stream ids end at 2^31-1. */
const MAX_STREAM_ID = 0x7fffffff;

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

function onSettingsTimeout(s: H2Session, ms: number): void {
  s.settingsTimer = null;
  connError(s, H2Error.SETTINGS_TIMEOUT, `the peer did not acknowledge our SETTINGS within ${ms} ms`);
}
