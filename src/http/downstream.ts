// The response side of a request, the same for both downstream codecs: the exchange writes through this and never
// asks which protocol the client speaks. HTTP/1 is its connection (one response at a time, no allocation per
// request); HTTP/2 is one small object per stream, which also turns local replies into gRPC trailers-only
// responses for gRPC callers.
import type * as http2 from 'node:http2';
import type { Reason } from '../reasons.js';
import type { HeaderMap } from './headers.js';

export interface Downstream {
  /** The response head (1xx excluded). `endStream`: no body follows. */
  respond(status: number, headers: HeaderMap, endStream: boolean): void;
  /** Body bytes; false asks the exchange to wait for resumeUpstream(). */
  write(chunk: Buffer): boolean;
  /** Whether the chunk last given to write() went to the kernel whole: nothing here refers to it any more. */
  lastWriteFlushed(): boolean;
  end(trailers: HeaderMap | null): void;
  /** The response cannot be completed: the client must see it broken, never as a clean end of a truncated body. */
  reset(why: string): void;
  /**
   * A response the proxy makes itself, tagged `x-pillion-reason`. Returns the status the client sees (gRPC: 200
   * with grpc-status) and the body bytes sent, or status 0 when a response had already started.
   */
  localReply(reason: Reason, body: string): LocalReplyResult;
}

export interface LocalReplyResult {
  readonly status: number;
  readonly bytes: number;
}

export const NOT_SENT: LocalReplyResult = Object.freeze({ status: 0, bytes: 0 });

/** What the HTTP/2 side reports back to its exchange. */
export interface H2Owner {
  resumeUpstream(): void;
  onDownstreamClosed(): void;
}

const kDownstream = Symbol('pillion.downstream');
type Stream = http2.ServerHttp2Stream & { [kDownstream]?: H2Downstream };

export class H2Downstream implements Downstream {
  private trailers: HeaderMap | null = null;

  constructor(
    private readonly stream: Stream,
    readonly owner: H2Owner,
    /** gRPC: trailers end the response, and local replies are trailers-only with a grpc-status. */
    private readonly grpc: boolean,
  ) {
    stream[kDownstream] = this;
    stream.on('close', onStreamClose);
    // A reset or a dead connection: Node emits 'aborted', then 'end' on the request body as if it were complete
    // (on a raw RST_STREAM too), then 'close'. The upstream request is cancelled at 'aborted', before a pool can
    // take that 'end' for END_STREAM and pass the truncated body on as a complete request.
    stream.on('aborted', onStreamClose);
    stream.on('error', onStreamError);
  }

  respond(status: number, headers: HeaderMap, endStream: boolean): void {
    const stream = this.stream;
    if (stream.destroyed) return;
    headers[':status'] = String(status);
    // gRPC ends with trailers; ask for the chance to send them unless this is a trailers-only response.
    const waitForTrailers = !endStream && this.grpc;
    stream.respond(headers, { endStream, waitForTrailers });
    if (waitForTrailers) stream.once('wantTrailers', onWantTrailers);
  }

  write(chunk: Buffer): boolean {
    const stream = this.stream;
    if (stream.destroyed || stream.write(chunk)) return true;
    stream.once('drain', onDrain);
    return false;
  }

  /** nghttp2 reads what is written when it frames it, later: a chunk stays referenced. */
  lastWriteFlushed(): boolean {
    return false;
  }

  end(trailers: HeaderMap | null): void {
    const stream = this.stream;
    this.trailers = trailers;
    if (stream.destroyed) return;
    // Trailers-only and non-gRPC streams end here; gRPC sends its trailers from 'wantTrailers'.
    if (!stream.headersSent) stream.respond({ ':status': '502' }, { endStream: true });
    else if (!stream.writableEnded) stream.end();
  }

  sendTrailers(): void {
    if (!this.stream.destroyed) this.stream.sendTrailers(this.trailers ?? {});
  }

  reset(why: string): void {
    // destroy(err), not close(INTERNAL_ERROR): close() ends the writable side first, so with nothing queued the
    // client gets END_STREAM, a clean end of a truncated body, and the RST_STREAM after it is void. destroy(err)
    // sends RST_STREAM INTERNAL_ERROR alone (and drops what is still queued).
    if (!this.stream.destroyed) this.stream.destroy(new Error(`response cut: ${why}`));
  }

  localReply(reason: Reason, body: string): LocalReplyResult {
    const stream = this.stream;
    if (stream.destroyed || stream.headersSent) return NOT_SENT;
    if (this.grpc) {
      // gRPC callers read status from grpc-status, so reply trailers-only with HTTP 200 (as Envoy does).
      stream.respond(
        {
          ':status': '200',
          'content-type': 'application/grpc',
          'grpc-status': String(reason.grpcStatus),
          'grpc-message': encodeURIComponent(body.trimEnd()),
          'x-pillion-reason': reason.id,
        },
        { endStream: true },
      );
      return { status: 200, bytes: 0 };
    }
    const bytes = Buffer.byteLength(body);
    stream.respond({
      ':status': String(reason.httpStatus),
      'content-type': 'text/plain; charset=utf-8',
      'content-length': String(bytes),
      'x-pillion-reason': reason.id,
    });
    stream.end(body);
    return { status: reason.httpStatus, bytes };
  }
}

function onStreamClose(this: Stream): void {
  this[kDownstream]!.owner.onDownstreamClosed();
}

function onStreamError(this: Stream): void {
  // 'close' follows and does the cleanup; this listener keeps the error from being thrown.
}

function onWantTrailers(this: Stream): void {
  this[kDownstream]!.sendTrailers();
}

function onDrain(this: Stream): void {
  this[kDownstream]!.owner.resumeUpstream();
}
