// How streams and the session end: stream close bookkeeping (with the closed-stream memory of RFC 9113 §5.1),
// stream errors, refused streams and the rapid-reset rule, connection errors and the session's end.
import { REASONS } from '../reasons.js';
import { PREMATURE_RESET_STREAMS } from './limits.js';
import { H2Error, h2ErrorName } from './errors.js';
import { logBugOnce } from './log.js';
import { kSession, type SessionSocket } from './session-socket.js';
import type { H2Session } from './session.js';
import type { H2Stream } from './stream.js';
import { appendGoaway, appendRst, EMPTY_QUEUE, flush } from './output.js';

/** After a connection error GOAWAY or a graceful end, how long the peer gets to close before we destroy. */
const END_GRACE_MS = 1_000;

// ==== ending ===============================================================================================

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

function forceDestroy(s: H2Session): void {
  s.endTimer = null;
  s.socket.destroy();
}

export function internalError(s: H2Session, err: unknown): void {
  logBugOnce(err, s.frameType);
  s.error ??= err instanceof Error ? err : new Error(String(err));
  connError(s, H2Error.INTERNAL_ERROR, 'internal error in HTTP/2 frame processing');
}

/** A connection error (RFC 9113 §5.4.1): GOAWAY `code`, every stream reset, the socket closed. */
export function connError(s: H2Session, code: number, why: string): void {
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
export function terminate(s: H2Session, streamCode: number, why: string): void {
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
export function maybeFinish(s: H2Session): void {
  if (!s.dead && (s.goawaySent || s.goawayRecv) && s.streams.size === 0) terminate(s, H2Error.NO_ERROR, 'session closed');
}

// ==== stream bookkeeping ===================================================================================

/** Closed: no more events, and what it had queued to send is dropped. */
export function markClosed(stream: H2Stream): void {
  stream.closed = true;
  stream.queue = EMPTY_QUEUE;
  stream.queueBytes = 0;
  stream.trailers = null;
}

export function removeStream(s: H2Session, stream: H2Stream): void {
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

export function rememberClosed(s: H2Session, signedId: number): void {
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
export function onClosedStream(s: H2Session, id: number, what: string): void {
  const how = closedHow(s, id);
  if (how === CLOSED_BY_END) connError(s, H2Error.STREAM_CLOSED, `${what} on stream ${id} after its END_STREAM`);
  else if (how === CLOSED_BY_PEER_RESET) appendRst(s, id, H2Error.STREAM_CLOSED, true);
}

export function closeIfDone(s: H2Session, stream: H2Stream): void {
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
export function streamError(s: H2Session, stream: H2Stream, code: number, why: string): void {
  if (stream.closed) return;
  appendRst(s, stream.id, code, true);
  removeStream(s, stream);
  if (stream.owner !== null) stream.owner.onReset(stream, code, why);
}

/** A stream we never opened for the owner (refused or malformed): RST_STREAM, counted as a premature reset. */
export function refuse(s: H2Session, id: number, code: number): void {
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
export function prematureReset(s: H2Session, why: string): void {
  const premature = ++s.prematureResets;
  if (s.resets.tryTake(s.lastActivityMs)) return;
  const started = s.streamsOpened + s.streamsRefused;
  if (premature * 2 >= Math.max(started, PREMATURE_RESET_STREAMS)) connError(s, H2Error.ENHANCE_YOUR_CALM, why);
}

/** Server role: a malformed request head gets RST_STREAM PROTOCOL_ERROR, reported as a bad_request answer. */
export function refuseMalformed(s: H2Session, id: number): void {
  if (s.owner.onRefusedHead !== undefined) s.owner.onRefusedHead(s, REASONS.badRequest);
  refuse(s, id, H2Error.PROTOCOL_ERROR);
}

/** Is `id` a stream nobody has opened yet (RFC 9113 §5.1 "idle")? */
export function isIdle(s: H2Session, id: number): boolean {
  if ((id & 1) === (s.isServer ? 1 : 0)) return id > s.lastPeerId;
  return id >= s.nextStreamId;
}
