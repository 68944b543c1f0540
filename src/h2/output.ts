// The write path: this loop turn's frames in a pooled output buffer (reserve/grow/flush, one socket write per
// session per turn, flushAll), the frame emitters, and DATA flow control on the send side (queues, pump).
import { newHeaderMap, type HeaderMap } from '../http/headers.js';
import {
  DEFAULT_WINDOW,
  Flag,
  FrameType,
  FRAME_HEADER,
  PREFACE,
  Setting,
  writeFrameHeader,
  writeGoaway,
  writeRstStream,
  writeSetting,
  writeWindowUpdate,
} from './frames.js';
import { MAX_OUTBOUND_CONTROL_FRAMES, SOCKET_HIGH_WATER } from './limits.js';
import { H2Error } from './errors.js';
import type { H2Session } from './session.js';
import type { H2Stream } from './stream.js';
import { closeIfDone, connError, internalError } from './lifecycle.js';

const OUT_START = 16_384;
/**
 * DATA payloads this large are written from the caller's buffer (cork + two writes), not copied. Measured
 * (h2load, 3000 x 1 MiB responses written in 64 KiB chunks): ~300 us of CPU per response this way, ~850 us
 * copying every payload into the output buffer.
 */
const ZERO_COPY_MIN = 8_192;

/** A stream's send queue until it first needs its own, and again once it is closed (markClosed). */
export const EMPTY_QUEUE: Buffer[] = [];

/**
 * Output buffers shared by all sessions of the process: a session takes one at its first frame of a loop turn
 * and gives it back at flush when the kernel took every byte (nothing references it then), so an idle
 * connection holds none. Bounded; a buffer that grew past OUT_START is not kept.
 */
export const NO_OUT = Buffer.alloc(0);
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

export const KIND_RESPONSE = 0;
export const KIND_REQUEST = 1;
const KIND_TRAILERS = 2;

/** Reserves n bytes at the end of `out`, growing it, and schedules the flush of this loop turn. */
export function reserve(s: H2Session, n: number): number {
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
export function flush(s: H2Session): void {
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
export function outputFull(s: H2Session): boolean {
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

export function writeOpening(s: H2Session): void {
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
export function countControl(s: H2Session): void {
  if (++s.ctrlBacklog > MAX_OUTBOUND_CONTROL_FRAMES) {
    connError(s, H2Error.ENHANCE_YOUR_CALM, 'the peer does not read the control frames it causes (outbound control frame limit)');
  }
}

/** RST_STREAM; `peerCaused` counts it against the outbound control frame limit (see countControl). */
export function appendRst(s: H2Session, id: number, code: number, peerCaused: boolean): void {
  const at = reserve(s, 13);
  writeRstStream(s.out, at, id, code);
  if (peerCaused) countControl(s);
}

export function appendGoaway(s: H2Session, last: number, code: number): void {
  // Never above a GOAWAY we sent (RFC 9113 §6.8): streams the peer opened after it were ignored, and a higher
  // id would tell it they may have been processed, so it would not retry them.
  if (last > s.goawayLastId) last = s.goawayLastId;
  const at = reserve(s, 17);
  writeGoaway(s.out, at, last, code);
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

/**
 * Encodes a header block straight into `out` and frames it: HEADERS, plus CONTINUATIONs when it is larger
 * than the peer's frame size. The encoder leaves its table alone when the block does not fit, so we grow and
 * encode again.
 */
export function appendHeaders(
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
export function sendSome(s: H2Session, stream: H2Stream, chunk: Buffer, off: number): number {
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
export function emitEnd(s: H2Session, stream: H2Stream): void {
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
export function pump(s: H2Session): void {
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

export function creditStream(s: H2Session, stream: H2Stream): void {
  const n = stream.recvOwed;
  stream.recvOwed = 0;
  stream.recvAvail += n;
  const at = reserve(s, 13);
  writeWindowUpdate(s.out, at, stream.id, n);
}
