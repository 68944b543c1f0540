// Protocol sniffing (pure): from a connection's first bytes, tell HTTP/2 prior knowledge, HTTP/1.x or other
// TCP — what Envoy's http_inspector listener filter decides.

export type Sniffed = 'h2' | 'h1' | 'tcp' | 'more';

/** RFC 9113 §3.4 client connection preface. */
export const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Request-line starts of HTTP/1.x (RFC 9110 §9 methods, plus PATCH). */
const METHODS = ['GET ', 'HEAD ', 'POST ', 'PUT ', 'DELETE ', 'CONNECT ', 'OPTIONS ', 'TRACE ', 'PATCH '].map((m) =>
  Buffer.from(m, 'latin1'),
);

/** True when `buf` and `token` agree on their common length. */
function agrees(buf: Buffer, token: Buffer): boolean {
  const n = Math.min(buf.length, token.length);
  for (let i = 0; i < n; i++) if (buf[i] !== token[i]) return false;
  return true;
}

/** Classifies the bytes read so far; 'more' means they are a prefix of something HTTP and more are needed. */
export function sniff(buf: Buffer): Sniffed {
  if (buf.length === 0) return 'more';
  if (agrees(buf, H2_PREFACE)) return buf.length >= H2_PREFACE.length ? 'h2' : 'more';
  let undecided = false;
  for (const method of METHODS) {
    if (!agrees(buf, method)) continue;
    if (buf.length >= method.length) return 'h1';
    undecided = true;
  }
  return undecided ? 'more' : 'tcp';
}

/**
 * Whether a connection starts with a TLS handshake record (content type 22, version major 3: what Envoy's
 * tls_inspector looks for), from its first bytes; 'more' until two bytes are in.
 */
export function sniffTls(buf: Buffer): 'tls' | 'other' | 'more' {
  if (buf.length === 0) return 'more';
  if (buf[0] !== 0x16) return 'other';
  if (buf.length < 2) return 'more';
  return buf[1] === 0x03 ? 'tls' : 'other';
}
