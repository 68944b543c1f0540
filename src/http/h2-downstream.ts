// The HTTP/2 side of one request on Pillion's own codec (src/h2): one small object per stream that is both the
// exchange's Downstream (the response goes out through it) and the stream's owner (the request body and the
// stream's end come in through it). Local replies to gRPC callers are trailers-only responses.
import { Readable } from 'node:stream';
import { H2Error } from '../h2/errors.js';
import type { H2Stream, H2StreamOwner } from '../h2/stream.js';
import type { DecodedHead } from '../h2/hpack.js';
import { REASONS, type Reason } from '../reasons.js';
import { forwardableRequestTrailers, newHeaderMap, type HeaderMap } from './headers.js';
import { NOT_SENT, type Downstream, type LocalReplyResult } from './downstream.js';
import { setDirectSource, setRequestTrailers, type DirectBodyConsumer, type DirectBodySource } from '../upstream/pool.js';

/** What the HTTP/2 side reports back to its exchange. */
export interface H2Owner {
  resumeUpstream(): void;
  onDownstreamClosed(): void;
  /** The request did not arrive in time (request_timeout): answer 408, or reset a response already begun. */
  failDownstream(reason: Reason): void;
  /** The request's last byte arrived (its route timeout starts now, as Envoy's does). */
  onRequestComplete(): void;
}

/**
 * A request body as a stream, fed by the stream's DATA; reading it lets the session credit the window again. An
 * HTTP/2 upstream takes the DATA directly instead (DirectBodySource, through the downstream), when it attaches
 * before anything went through the Readable: no push, flowing-mode nextTicks or listeners per request.
 */
class H2RequestBody extends Readable {
  constructor(
    private readonly stream: H2Stream,
    direct: DirectBodySource,
  ) {
    super();
    setDirectSource(this, direct);
  }
  override _read(): void {
    if (!this.stream.closed) this.stream.resume();
  }
}

export class H2Downstream implements Downstream, H2StreamOwner, DirectBodySource {
  /** The request body's stream; null when the request had none, once its end came, or once we answered. */
  private body: H2RequestBody | null = null;
  /** The upstream stream taking the body's DATA directly (attachDirect); null on the Readable path. */
  private direct: DirectBodyConsumer | null = null;
  /** Something went through the Readable (a chunk or its end): a direct consumer can no longer take over. */
  private pushed = false;
  /** answered() has run (it also cleared `body`: request bytes still coming are read and dropped). */
  private discard = false;
  /**
   * HCM request_timeout, as Envoy arms it: from the head until the request's end or the response's start,
   * whichever comes first. Armed only for a request with a body (a head with END_STREAM is the whole request).
   */
  private requestTimer: NodeJS.Timeout | null = null;
  /** The request's END_STREAM came (with the head, or after its body). */
  private requestEnded = false;

  constructor(
    private readonly stream: H2Stream,
    readonly owner: H2Owner,
    /** gRPC: local replies are trailers-only with a grpc-status. */
    private readonly grpc: boolean,
    /** A HEAD request: a local reply states its length but sends no body. */
    private readonly headRequest: boolean,
    endStream: boolean,
    requestTimeoutMs: number,
  ) {
    stream.owner = this;
    this.requestEnded = endStream;
    if (endStream) return;
    this.body = new H2RequestBody(stream, this);
    if (requestTimeoutMs > 0) this.requestTimer = setTimeout(onRequestTimeout, requestTimeoutMs, this);
  }

  onRequestTimeout(): void {
    this.requestTimer = null;
    this.owner.failDownstream(REASONS.requestTimeout);
  }

  private clearRequestTimer(): void {
    if (this.requestTimer === null) return;
    clearTimeout(this.requestTimer);
    this.requestTimer = null;
  }

  /** A client that asked for `expect: 100-continue` gets it at once, as on HTTP/1.1: it sends, the upstream reads. */
  sendContinue(): void {
    if (this.body !== null) this.stream.respond(100, null, false);
  }

  /** The request body for the router, null when the head had END_STREAM. */
  requestBody(): Readable | null {
    return this.body;
  }

  // --- H2StreamOwner: the request side ---

  onHead(_stream: H2Stream, _head: DecodedHead, _endStream: boolean): void {
    // Client role only: a server stream's head comes through the session's onStream.
  }

  onData(stream: H2Stream, chunk: Buffer): void {
    const direct = this.direct;
    if (direct !== null) {
      // The session credits the window after we return unless paused: the upstream's backpressure holds it.
      if (!direct.directData(chunk)) stream.pause();
      return;
    }
    const body = this.body;
    // Answered already, or a body nobody reads any more: dropped, and its window credited after we return.
    if (body === null) return;
    this.pushed = true;
    // The stream window bounds what push() may buffer past its high-water mark: we stop crediting until _read.
    if (!body.push(chunk)) stream.pause();
  }

  onEnd(_stream: H2Stream, trailers: HeaderMap | null): void {
    this.requestEnded = true;
    this.clearRequestTimer();
    this.owner.onRequestComplete();
    const body = this.body;
    const direct = this.direct;
    this.body = null;
    this.direct = null;
    if (body === null) return;
    // Trailers go upstream with the body's end (the session already refused pseudo headers in them).
    const forwarded = trailers === null ? null : forwardableRequestTrailers(trailers);
    if (direct !== null) return direct.directEnd(forwarded);
    this.pushed = true;
    if (forwarded !== null) setRequestTrailers(body, forwarded);
    body.push(null);
  }

  onReset(_stream: H2Stream, _code: number, _why: string): void {
    // The client reset the stream, or its connection died. The body never gets its end (a truncated request must
    // never pass for a complete one): the exchange cancels the upstream request, which lets go of the body.
    this.clearRequestTimer();
    this.body = null;
    this.direct = null;
    this.owner.onDownstreamClosed();
  }

  // --- DirectBodySource: an HTTP/2 upstream stream taking the body's DATA ---

  attachDirect(consumer: DirectBodyConsumer): boolean {
    const body = this.body;
    // Nothing may have gone through the Readable, nor may anyone else be reading it.
    if (body === null || this.pushed || this.direct !== null || body.listenerCount('data') !== 0 || body.readableFlowing === true) return false;
    this.direct = consumer;
    return true;
  }

  resumeDirect(): void {
    if (this.direct !== null && !this.stream.closed) this.stream.resume();
  }

  detachDirect(consumer: DirectBodyConsumer): void {
    if (this.direct !== consumer) return;
    this.direct = null;
    // As a Readable body left flowing with no reader: what the client still sends is dropped, its window credited.
    this.body = null;
    if (!this.stream.closed) this.stream.resume();
  }

  onDrain(_stream: H2Stream): void {
    this.owner.resumeUpstream();
  }

  // --- Downstream: the response side ---

  respond(status: number, headers: HeaderMap, endStream: boolean): void {
    const stream = this.stream;
    this.clearRequestTimer();
    if (stream.closed) return;
    stream.respond(status, headers, endStream);
    if (endStream) this.answered();
  }

  write(chunk: Buffer): boolean {
    const stream = this.stream;
    return stream.closed || stream.write(chunk);
  }

  /** The session may hold a chunk until the flow-control window lets it out: it stays referenced. */
  lastWriteFlushed(): boolean {
    return false;
  }

  end(trailers: HeaderMap | null): void {
    const stream = this.stream;
    this.answered();
    if (stream.closed || stream.localEnded) return;
    if (!stream.sentHeaders) stream.respond(502, null, true);
    else stream.end(trailers);
  }

  reset(_why: string): void {
    // RST_STREAM alone (queued data dropped): the client sees the response broken, never a clean end.
    this.clearRequestTimer();
    this.body = null;
    this.direct = null;
    this.stream.reset(H2Error.INTERNAL_ERROR);
  }

  requestComplete(): boolean {
    return this.requestEnded;
  }

  localReply(reason: Reason, body: string): LocalReplyResult {
    const stream = this.stream;
    if (stream.closed || stream.sentHeaders) return NOT_SENT;
    this.answered();
    const headers = newHeaderMap();
    // As Envoy marks a circuit breaker's refusal: a proxy in front (a peer's outbound sidecar) does not retry it.
    if (reason === REASONS.overflow) headers['x-envoy-overloaded'] = 'true';
    if (this.grpc) {
      // gRPC callers read status from grpc-status, so reply trailers-only with HTTP 200 (as Envoy does).
      headers['content-type'] = 'application/grpc';
      headers['grpc-status'] = String(reason.grpcStatus);
      headers['grpc-message'] = encodeURIComponent(body.trimEnd());
      headers['x-pillion-reason'] = reason.id;
      stream.respond(200, headers, true);
      return { status: 200, bytes: 0 };
    }
    const bytes = Buffer.byteLength(body);
    headers['content-type'] = 'text/plain; charset=utf-8';
    headers['content-length'] = String(bytes);
    headers['x-pillion-reason'] = reason.id;
    if (this.headRequest) {
      stream.respond(reason.httpStatus, headers, true);
      return { status: reason.httpStatus, bytes: 0 };
    }
    stream.respond(reason.httpStatus, headers, false);
    stream.write(Buffer.from(body));
    stream.end(null);
    return { status: reason.httpStatus, bytes };
  }

  /**
   * Our answer is complete: the request body is no one's any more. What the client still sends is credited and
   * dropped, so an answer given before the body arrived (a 404 to a POST) never stalls the client's upload.
   */
  private answered(): void {
    this.clearRequestTimer();
    if (this.discard) return;
    this.discard = true;
    this.body = null;
    this.direct = null;
    if (!this.stream.closed) this.stream.resume();
  }
}

function onRequestTimeout(downstream: H2Downstream): void {
  downstream.onRequestTimeout();
}
