// Whether nghttp2 is done with a Node HTTP/2 session that Node has not closed, on either side of the proxy.
import type * as http2 from 'node:http2';

/** The native handle's symbol on Node's Http2Session (not exported by Node): looked up until found. */
let kNativeHandle: symbol | undefined;

/**
 * True once nghttp2 is done with a session that Node has not closed. When nghttp2 ends a session with a GOAWAY
 * of its own (a client's rapid reset: INTERNAL_ERROR; a header block it cannot decode, from a client or an
 * upstream: COMPRESSION_ERROR; its flood limits), Node stops reading the socket and from then on emits nothing
 * and never closes it, not even on the peer's FIN (which it no longer reads); streams open on it never close.
 * The one sign is the native handle's hasPendingData(), what Node's own graceful close waits on: false once
 * nghttp2 wants neither to read nor to write. A live session always wants to read; one that sent or received
 * GOAWAY stops wanting to once its last stream is closed. Where the internal handle or method is missing
 * (another Node), this says false and the idle timeouts stay the backstop.
 */
export function nghttp2Finished(session: http2.Http2Session): boolean {
  kNativeHandle ??= Object.getOwnPropertySymbols(session).find((s) => s.description === 'kHandle');
  if (kNativeHandle === undefined) return false;
  const handle = (session as unknown as Record<symbol, { hasPendingData?: () => boolean } | undefined>)[kNativeHandle];
  return handle !== undefined && typeof handle.hasPendingData === 'function' && !handle.hasPendingData();
}
