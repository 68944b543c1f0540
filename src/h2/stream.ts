// One HTTP/2 stream: the owner's side (respond, write, end, reset, pause/resume). Framing is output.ts's, the
// state changes lifecycle.ts's.
import type { HeaderMap } from '../http/headers.js';
import type { DecodedHead } from './hpack.js';
import { Flag } from './frames.js';
import type { H2Session } from './session.js';
import { appendHeaders, appendRst, creditStream, emitEnd, EMPTY_QUEUE, KIND_RESPONSE, outputFull, sendSome } from './output.js';
import { closeIfDone, removeStream } from './lifecycle.js';

export interface H2StreamOwner {
  onHead(stream: H2Stream, head: DecodedHead, endStream: boolean): void;
  onData(stream: H2Stream, chunk: Buffer): void;
  onEnd(stream: H2Stream, trailers: HeaderMap | null): void;
  onReset(stream: H2Stream, code: number, why: string): void;
  onDrain(stream: H2Stream): void;
}

/**
 * Queued bytes per stream past which write() returns false: the peer's initial window if larger (a stream may
 * fill its window at once), but never past STREAM_QUEUE_MAX: a peer announcing a 2 GiB window and not reading
 * would otherwise make us hold whatever the owner writes.
 */
export const STREAM_QUEUE_LIMIT = 65_536;
export const STREAM_QUEUE_MAX = 1 << 20;

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
