// The read path: frames parsed from the socket's chunks (readChunk, fillCarry, processFrame) and each frame
// type's handler; header blocks decoded into new streams, response heads or trailers.
import { newHeaderMap, type HeaderMap } from '../http/headers.js';
import { REASONS } from '../reasons.js';
import { DecodedHead, HPACK_TOO_LARGE, HpackError, hostInvalid } from './hpack.js';
import {
  Flag,
  FrameType,
  FRAME_HEADER,
  MAX_FRAME,
  MAX_WINDOW,
  PREFACE,
  readFrameLength,
  Setting,
  writePingAck,
  writeSettingsAck,
  writeWindowUpdate,
} from './frames.js';
import {
  MAX_EMPTY_FRAMES,
  PREMATURE_RESET_MS,
  PRIORITY_PER_STREAM,
  WINDOW_UPDATES_PER_DATA,
  WINDOW_UPDATE_SLACK,
} from './limits.js';
import { H2Error, h2ErrorName } from './errors.js';
import type { H2Session } from './session.js';
import { H2Stream, STREAM_QUEUE_LIMIT, STREAM_QUEUE_MAX } from './stream.js';
import { appendHeaders, appendRst, countControl, creditStream, KIND_RESPONSE, pump, reserve } from './output.js';
import {
  closeIfDone,
  connError,
  isIdle,
  markClosed,
  maybeFinish,
  onClosedStream,
  prematureReset,
  refuse,
  refuseMalformed,
  rememberClosed,
  removeStream,
  streamError,
} from './lifecycle.js';

/** The 431 we answer over-large request heads with (REASONS.headersTooLarge). */
const TOO_LARGE_HEADERS: HeaderMap = newHeaderMap();
TOO_LARGE_HEADERS['x-pillion-reason'] = REASONS.headersTooLarge.id;
TOO_LARGE_HEADERS['content-length'] = '0';

/**
 * Parses frames straight from the socket's chunk; only a partial frame's bytes are copied (into a fresh buffer
 * per frame). DATA payloads reach owners as subarray views of these chunks: Node never reuses a socket's 'data'
 * chunk (no `onread` buffer is configured), and the carry buffers are fresh, so the views stay valid.
 */
export function readChunk(s: H2Session, chunk: Buffer): void {
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
