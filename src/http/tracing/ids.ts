// Trace and span ids (W3C trace-id: 16 random bytes, parent-id/span-id: 8) as lowercase hex. One randomFillSync
// fills a pooled buffer and one native toString('hex') encodes it in bulk; each id is then a slice of that string
// (V8 makes a sliced string, no copy), so an id costs no crypto call and no per-byte work in JavaScript.
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let hex = '';
/** Offset (in hex characters) of the next unused id material. */
let next = POOL_BYTES * 2;

const ZERO_SPAN = '0000000000000000';
const ZERO_TRACE = '00000000000000000000000000000000';

function take(chars: number): string {
  if (next + chars > POOL_BYTES * 2) {
    randomFillSync(pool);
    hex = pool.toString('hex');
    next = 0;
  }
  const start = next;
  next += chars;
  return hex.slice(start, next);
}

/** A random 32-hex trace id, never all zeros (W3C: an all-zero trace-id is invalid). */
export function newTraceId(): string {
  let id = take(32);
  while (id === ZERO_TRACE) id = take(32);
  return id;
}

/** A random 16-hex span id, never all zeros. */
export function newSpanId(): string {
  let id = take(16);
  while (id === ZERO_SPAN) id = take(16);
  return id;
}
