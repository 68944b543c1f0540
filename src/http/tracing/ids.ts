// Trace and span ids (W3C trace-id: 16 random bytes, parent-id/span-id: 8) as lowercase hex. randomFillSync has a
// fixed cost of some 10 µs a call, so it fills a 64 KiB pool at once; the pool is hex-encoded natively 4 KiB at a
// time (a larger string costs more per byte: it is not made in the young generation) and each id is a slice of
// that string (V8 makes a sliced string, no copy). An id then costs some 25 ns, no crypto call and no per-byte JS.
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 64 * 1024;
const WINDOW_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
/** Byte offset in `pool` of the window `hex` encodes; POOL_BYTES forces a refill. */
let windowStart = POOL_BYTES;
let hex = '';
/** Byte offset (within the window) of the next unused random byte. */
let next = WINDOW_BYTES;

function allZero(at: number, bytes: number): boolean {
  for (let i = at; i < at + bytes; i++) if (pool[i] !== 0) return false;
  return true;
}

/** Hex of the next `bytes` random bytes; never all zeros (W3C: all-zero trace-id and parent-id are invalid). */
function take(bytes: number): string {
  for (;;) {
    if (next + bytes > WINDOW_BYTES) {
      windowStart += WINDOW_BYTES;
      if (windowStart >= POOL_BYTES) {
        randomFillSync(pool);
        windowStart = 0;
      }
      hex = pool.toString('hex', windowStart, windowStart + WINDOW_BYTES);
      next = 0;
    }
    const at = windowStart + next;
    next += bytes;
    // Checked on the bytes, and only past a zero first byte (1 in 256): comparing the sliced string to a zero
    // literal, or reading every byte, cost more than making the id.
    if (pool[at] !== 0 || !allZero(at, bytes)) return hex.slice((next - bytes) * 2, next * 2);
  }
}

/** A random 32-hex trace id, never all zeros. */
export function newTraceId(): string {
  return take(16);
}

/** A random 16-hex span id, never all zeros. */
export function newSpanId(): string {
  return take(8);
}
