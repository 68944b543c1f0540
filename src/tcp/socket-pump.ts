// One direction of a TCP session without a Buffer allocation per read: the source socket reads (Node's `onread`)
// into a buffer of the pump's own (16 or 64 KiB), written to the destination and reused while the kernel takes
// each write whole. Node's default read path allocates a fresh 64 KiB buffer per read; their external memory made
// V8 run a full mark-compact every ~100 ms under a bulk transfer. Where raw reads are not possible
// (src/tcp/raw-read.ts), the session uses pipe() as before.
import type * as net from 'node:net';
import { canReadRaw, giveReadBuffer, installRawRead, LARGE_READ_BYTES, SMALL_READ_BYTES, takeReadBuffer } from './raw-read.js';

/**
 * A session starts reading into 16 KiB (nginx's and HAProxy's per-direction buffer: what an idle connection
 * holds) and moves to 64 KiB, Node's own read size, once a read fills it: in an A/B, bulk transfers ran at
 * ~0.55 – 0.65 × nginx with 16 KiB reads and ~0.8 – 1.05 × with 64 KiB. A read under this moves it back.
 */
const SHORT_READ_BYTES = 4 * 1024;

/**
 * Moves src's bytes to dst until src ends (then ends dst: the half-close), pausing src while dst is over its
 * high-water mark, as `pipe()` does. Only where `canReadRaw(src)` (raw-read.ts).
 */
export class SocketPump {
  private buffer = takeReadBuffer(SMALL_READ_BYTES);
  /** False once a write that the kernel did not take whole refers to `buffer`. */
  private reusable = true;

  constructor(
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
  ) {}

  start(): void {
    const src = this.src;
    installRawRead(src, this.buffer, this.onRead, this.nextBuffer);
    src.on('end', this.onEnd);
    this.dst.on('drain', this.onDrain);
    // What src read before (a client that spoke first, a sniffer's pushed-back bytes) waits in its stream buffer.
    for (let chunk = src.read() as Buffer | null; chunk !== null; chunk = src.read() as Buffer | null) this.dst.write(chunk);
    src.resume();
  }

  /** Node's onread callback: false stops reading (Node calls readStop) until dst drains. */
  private readonly onRead = (nread: number, buf: Buffer): boolean => {
    const dst = this.dst;
    if (dst.destroyed || dst.writableEnded) return false;
    const ok = dst.write(nread === buf.length ? buf : buf.subarray(0, nread));
    // A write the kernel did not take whole keeps a reference to buf until it completes: the next read goes to
    // another buffer, and this one is left to the GC.
    this.reusable = dst.writableLength === 0;
    const size = nread === buf.length ? LARGE_READ_BYTES : nread < SHORT_READ_BYTES ? SMALL_READ_BYTES : buf.length;
    if (!this.reusable) {
      this.buffer = takeReadBuffer(size);
      this.reusable = true;
    } else if (size !== buf.length) {
      giveReadBuffer(buf);
      this.buffer = takeReadBuffer(size);
    }
    return ok;
  };

  /** Node asks after every read which buffer the next one goes to. */
  private readonly nextBuffer = (): Buffer => this.buffer;

  /** Once both sockets are closed: nothing refers to the read buffer any more. */
  release(): void {
    if (this.reusable) giveReadBuffer(this.buffer);
    this.reusable = false;
  }

  private readonly onDrain = (): void => {
    if (!this.src.destroyed) this.src.resume();
  };

  private readonly onEnd = (): void => {
    if (!this.dst.destroyed) this.dst.end();
  };
}
