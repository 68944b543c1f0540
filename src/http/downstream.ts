// The response side of a request, the same for both downstream codecs: the exchange writes through this and never
// asks which protocol the client speaks. HTTP/1 is its connection (one response at a time, no allocation per
// request); HTTP/2 is one small object per stream (src/http/h2-downstream.ts), which also turns local replies into
// gRPC trailers-only responses for gRPC callers.
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
  /** Whether the whole request (its body's end) has arrived from the client. */
  requestComplete(): boolean;
}

export interface LocalReplyResult {
  readonly status: number;
  readonly bytes: number;
}

export const NOT_SENT: LocalReplyResult = Object.freeze({ status: 0, bytes: 0 });
