// The abuse limits of one HTTP/2 session (RFC 9113 §10.5 and the CVEs of 2019-2024), as named numbers. Each is a
// connection error (GOAWAY ENHANCE_YOUR_CALM) when exceeded.

/** Rapid reset (CVE-2023-44487), see prematureReset in session.ts: nghttp2's rate bucket, and Envoy's overload
 *  defaults (a peer reset within PREMATURE_RESET_MS of opening the stream is premature; premature resets and
 *  refused streams may be half of the streams started, counted once PREMATURE_RESET_STREAMS have started). */
export const RESET_BURST = 1000;
export const RESETS_PER_SECOND = 33;
export const PREMATURE_RESET_MS = 1_000;
export const PREMATURE_RESET_STREAMS = 500;
/** CONTINUATION flood (CVE-2024-27316): frames per header block, empty ones included; more when the header list
 *  limit needs more 16 KiB frames (max_request_headers_kb goes to 8 MiB). */
export const MAX_HEADER_BLOCK_FRAMES = 64;
/** Bytes of a compressed header block beyond the header list limit (one frame's worth of slack). */
export const HEADER_BLOCK_SLACK = 16_384;
/** Peer-caused control frames (PING/SETTINGS ACK, RST_STREAM) we queue in one loop turn, or until the socket took all
 *  our output (Envoy's max_outbound_control_frames, nghttp2's max_outbound_ack). */
export const MAX_OUTBOUND_CONTROL_FRAMES = 1000;
/** Socket bytes waiting past which queued DATA stops (control frames still go) and the counter above runs. */
export const SOCKET_HIGH_WATER = 1 << 20;
/** Consecutive inbound frames with an empty payload and no END_STREAM (DATA, HEADERS, CONTINUATION). */
export const MAX_EMPTY_FRAMES = 100;
/** PRIORITY frames allowed: this many per stream opened, plus the same again. */
export const PRIORITY_PER_STREAM = 100;
/** WINDOW_UPDATE frames allowed: (this many per DATA frame we sent + one per stream opened) * 2 + WINDOW_UPDATE_SLACK
 *  (Envoy's 5 + 2 * (streams + 10 * DATA frames), with more slack). */
export const WINDOW_UPDATES_PER_DATA = 10;
export const WINDOW_UPDATE_SLACK = 100;
