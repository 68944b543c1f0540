// Shared tools of the abuse suite: /proc readings of a child process, the sidecar's active gauges and their
// return to baseline, a seeded PRNG, and a small HTTP/2 frame kit (9-byte header + payload, HPACK literals)
// for clients and servers that do exactly what a test says, malformed or hostile.
import { readdirSync, readFileSync } from 'node:fs';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { AbuseSidecar } from './sidecar.js';

// ==== /proc ==============================================================================================

/** VmRSS of a process in MiB; NaN when it is gone. */
export function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Open file descriptors of a process; NaN when it is gone. */
export function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

/** Samples a process's RSS every `everyMs` until stopped; `max` is the highest seen (MiB). */
export class RssWatch {
  max = 0;
  readonly start: number;
  private readonly timer: NodeJS.Timeout;
  constructor(
    private readonly pid: number,
    everyMs = 50,
  ) {
    this.start = rssMiB(pid);
    this.max = this.start;
    this.timer = setInterval(() => this.sample(), everyMs);
  }
  sample(): number {
    const now = rssMiB(this.pid);
    if (now > this.max) this.max = now;
    return now;
  }
  stop(): { start: number; max: number; end: number } {
    clearInterval(this.timer);
    const end = this.sample();
    return { start: this.start, max: this.max, end };
  }
}

// ==== gauges and baselines ================================================================================

export interface Gauges {
  requests: number;
  connections: number;
  upstreamRequests: number;
}

export async function gauges(s: AbuseSidecar): Promise<Gauges> {
  return {
    requests: await s.metric('pillion_downstream_requests_active'),
    connections: await s.metric('pillion_downstream_connections_active'),
    upstreamRequests: await s.metric('pillion_upstream_requests_active'),
  };
}

export interface Baseline extends Gauges {
  fds: number;
  rss: number;
}

/** The sidecar at rest: its active gauges (the /metrics connection itself counts on no listener) and fds. */
export async function baseline(s: AbuseSidecar): Promise<Baseline> {
  const pid = s.proc.child.pid!;
  return { ...(await gauges(s)), fds: fdCount(pid), rss: rssMiB(pid) };
}

/** Polls `fn` until `ok` holds or `ms` pass; returns the last value either way. */
export async function eventually<T>(fn: () => Promise<T> | T, ok: (v: T) => boolean, ms = 5000, everyMs = 50): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await sleep(everyMs);
  }
}

/**
 * Waits (up to `ms`) until the active gauges are back at `base` and the fds within `fdSlack` of it; returns
 * what it saw last, for the test to assert on (so a failure prints the numbers).
 */
export async function settleToBaseline(
  s: AbuseSidecar,
  base: Baseline,
  opts: { fdSlack?: number; ms?: number } = {},
): Promise<{ gauges: Gauges; fds: number }> {
  const pid = s.proc.child.pid!;
  const fdSlack = opts.fdSlack ?? 10;
  return eventually(
    async () => ({ gauges: await gauges(s), fds: fdCount(pid) }),
    (v) =>
      v.gauges.requests === base.requests &&
      v.gauges.connections === base.connections &&
      v.gauges.upstreamRequests === base.upstreamRequests &&
      v.fds <= base.fds + fdSlack,
    opts.ms ?? 6000,
    100,
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** mulberry32: a small seeded PRNG, so a failing storm can be replayed. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

// ==== HTTP/2 frames ======================================================================================

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export const T = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
export const F = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
export const S = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6 } as const;
export const ERR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

export function settings(entries: readonly (readonly [number, number])[] = []): Buffer {
  const p = Buffer.alloc(entries.length * 6);
  entries.forEach(([id, value], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(value, i * 6 + 2);
  });
  return frame(T.SETTINGS, 0, 0, p);
}

export const SETTINGS_ACK = frame(T.SETTINGS, F.ACK, 0);

export function ping(data = 0): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(data >>> 0, 4);
  return frame(T.PING, 0, 0, p);
}

export function rstStream(stream: number, code: number = ERR.CANCEL): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code, 0);
  return frame(T.RST_STREAM, 0, stream, p);
}

export function windowUpdate(stream: number, increment: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(increment, 0);
  return frame(T.WINDOW_UPDATE, 0, stream, p);
}

export function goaway(lastStream: number, code: number = ERR.NO_ERROR): Buffer {
  const p = Buffer.alloc(8);
  p.writeUInt32BE(lastStream, 0);
  p.writeUInt32BE(code, 4);
  return frame(T.GOAWAY, 0, 0, p);
}

/** HPACK integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the bits above the prefix. */
function hpackInt(value: number, prefixBits: number, first: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([first | value]);
  const out = [first | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

function hpackString(s: string): Buffer {
  const bytes = Buffer.from(s, 'latin1');
  return Buffer.concat([hpackInt(bytes.length, 7, 0), bytes]);
}

/** Literal header field without indexing, new name (RFC 7541 §6.2.2): no dynamic table, easy by hand. */
export function hpackLiteral(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
}

export function headerBlock(headers: readonly (readonly [string, string])[]): Buffer {
  return Buffer.concat(headers.map(([n, v]) => hpackLiteral(n, v)));
}

/** A GET request's header block for `authority` and `path`. */
export function requestBlock(authority: string, path = '/', method = 'GET', extra: readonly (readonly [string, string])[] = []): Buffer {
  return headerBlock([[':method', method], [':scheme', 'http'], [':authority', authority], [':path', path], ...extra]);
}

/** HEADERS (+ CONTINUATIONs when the block is larger than `maxFrame`), END_HEADERS on the last. */
export function headersFrames(stream: number, block: Buffer, endStream: boolean, maxFrame = 16_384): Buffer {
  const out: Buffer[] = [];
  for (let off = 0, first = true; first || off < block.length; first = false) {
    const part = block.subarray(off, off + maxFrame);
    off += part.length;
    const last = off >= block.length;
    const flags = (last ? F.END_HEADERS : 0) | (first && endStream ? F.END_STREAM : 0);
    out.push(frame(first ? T.HEADERS : T.CONTINUATION, flags, stream, part));
  }
  return Buffer.concat(out);
}

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

/** Splits a byte stream into frames; feed it chunks, it calls `onFrame` per complete frame. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(
    private readonly onFrame: (f: Frame) => void,
    private skip = 0,
  ) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.skip > 0) {
      const n = Math.min(this.skip, this.buf.length);
      this.buf = this.buf.subarray(n);
      this.skip -= n;
    }
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f: Frame = { type: this.buf[3]!, flags: this.buf[4]!, stream: this.buf.readUInt32BE(5) & 0x7fffffff, payload: this.buf.subarray(9, 9 + len) };
      this.buf = this.buf.subarray(9 + len);
      this.onFrame(f);
    }
  }
}

/** A hand-driven HTTP/2 server (an upstream under test control): what `startRawH2Server` returns. */
export interface RawH2Server {
  port: number;
  /** Connections accepted so far. */
  connections: number;
  /** Connections open now. */
  readonly open: number;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1; per connection sends empty SETTINGS, skips the client preface, ACKs the client's
 * SETTINGS, and hands every frame (SETTINGS included) to `onFrame`, which answers as the test wants.
 */
export async function startRawH2Server(onFrame: (socket: net.Socket, f: Frame) => void): Promise<RawH2Server> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.write(settings());
    const reader = new FrameReader((f) => {
      if (f.type === T.SETTINGS && (f.flags & F.ACK) === 0) socket.write(SETTINGS_ACK);
      onFrame(socket, f);
    }, PREFACE.length);
    socket.on('data', (d: Buffer) => reader.push(d));
  });
  server.on('error', () => {});
  const state: RawH2Server = {
    port: 0,
    connections: 0,
    get open(): number {
      return sockets.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  state.port = await listen(server);
  return state;
}

/**
 * A hand-driven HTTP/2 client connection: sends the preface and its SETTINGS, ACKs the server's SETTINGS
 * (unless told not to), and records what comes back: GOAWAY, RST_STREAMs, response HEADERS per stream, DATA
 * bytes, and whether the server closed the connection.
 */
export class RawH2Client {
  readonly socket: net.Socket;
  goaway: { lastStream: number; code: number } | null = null;
  readonly resets = new Map<number, number>();
  readonly responses = new Set<number>();
  /** First octet of the first header-block fragment per stream: 0x88 is `:status: 200` from the static table. */
  readonly statusByte = new Map<number, number>();
  dataBytes = 0;
  framesIn = 0;
  closed = false;
  ackSettings = true;
  readonly ready: Promise<void>;
  readonly closedP: Promise<void>;
  private readonly reader: FrameReader;

  constructor(port: number, ourSettings: readonly (readonly [number, number])[] = []) {
    this.reader = new FrameReader((f) => this.onFrame(f));
    this.socket = net.connect(port, '127.0.0.1');
    this.socket.on('error', () => {});
    this.ready = new Promise((resolve) => this.socket.once('connect', () => resolve()));
    this.closedP = new Promise((resolve) =>
      this.socket.once('close', () => {
        this.closed = true;
        resolve();
      }),
    );
    this.socket.on('data', (d: Buffer) => this.reader.push(d));
    this.socket.write(Buffer.concat([PREFACE, settings(ourSettings)]));
  }

  private onFrame(f: Frame): void {
    this.framesIn++;
    if (f.type === T.SETTINGS && (f.flags & F.ACK) === 0 && this.ackSettings && !this.socket.destroyed) this.socket.write(SETTINGS_ACK);
    else if (f.type === T.GOAWAY) this.goaway = { lastStream: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) };
    else if (f.type === T.RST_STREAM) this.resets.set(f.stream, f.payload.readUInt32BE(0));
    else if (f.type === T.HEADERS) {
      this.responses.add(f.stream);
      if (!this.statusByte.has(f.stream)) this.statusByte.set(f.stream, f.payload[(f.flags & F.PADDED ? 1 : 0) + (f.flags & F.PRIORITY ? 5 : 0)] ?? -1);
    } else if (f.type === T.DATA) this.dataBytes += f.payload.length;
  }

  /** Writes `buf`; resolves when the socket takes more (or is gone). */
  async write(buf: Buffer): Promise<void> {
    if (this.socket.destroyed) return;
    if (this.socket.write(buf)) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Resolves true once the server sent GOAWAY or closed, false after `ms`. */
  async refused(ms: number): Promise<boolean> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (this.goaway !== null || this.closed) return true;
      await sleep(20);
    }
    return this.goaway !== null || this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
