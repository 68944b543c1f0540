// PROTOTYPE (C), not used by the product: minimal HTTP/1.1 keep-alive forwarder reading sockets with net's
// `onread` (one reused buffer, one JS call per read) and a minimal strict JS parser of the request/response
// head: just enough for the benchmark's messages (request line or status line, header lines, content-length
// bodies), to know the floor of the design; nothing here is production grade. See README.md.
// node dist/bench/prototypes/fwd-js-parser.js --port 0 --upstream PORT
import { createServer, type Socket } from 'node:net';
import { writeLatin1 } from '../../src/tcp/direct-write.js';
import { Pool, adoptOnread, contentLength, forwarderArgs, latin1, listen, noop, requestHead, responseHead, upstreamSocket, type UpstreamLink } from './common.js';

const args = forwarderArgs();
const MAX_HEAD = 16 * 1024;
const CR = 13;
const LF = 10;
const SP = 32;
const COLON = 58;

/** One parsed head; `parseHead` fills it. */
class Head {
  method = '';
  url = '';
  status = 0;
  lines: string[] = [];
  bodyLength = 0;
}

/**
 * Parses a head in buf[start, end): returns the offset just past its empty line, 0 when the head is not all
 * there yet, -1 when it is malformed (or uses what this prototype does not do: chunked, HTTP/1.0).
 */
function parseHead(buf: Buffer, start: number, end: number, request: boolean, out: Head): number {
  let i = start;
  // Start line: `METHOD SP target SP HTTP/1.1` or `HTTP/1.1 SP ddd SP reason`.
  const sp1 = indexOf(buf, SP, i, end);
  if (sp1 < 0) return sp1 === -1 ? 0 : -1;
  if (request) {
    const sp2 = indexOf(buf, SP, sp1 + 1, end);
    if (sp2 < 0) return sp2 === -1 ? 0 : -1;
    if (sp2 + 10 > end) return 0;
    if (!isHttp11(buf, sp2 + 1) || buf[sp2 + 9] !== CR || buf[sp2 + 10] !== LF) return -1;
    out.method = latin1(buf, i, sp1);
    out.url = latin1(buf, sp1 + 1, sp2);
    i = sp2 + 11;
  } else {
    if (sp1 - i !== 8 || !isHttp11(buf, i) || sp1 + 4 > end) return 0;
    const s0 = buf[sp1 + 1]! - 48;
    const s1 = buf[sp1 + 2]! - 48;
    const s2 = buf[sp1 + 3]! - 48;
    if ((s0 | s1 | s2) < 0 || s0 > 9 || s1 > 9 || s2 > 9) return -1;
    out.status = s0 * 100 + s1 * 10 + s2;
    const cr = indexOf(buf, CR, sp1 + 4, end);
    if (cr === -2) return -1;
    if (cr < 0 || cr + 1 >= end) return 0;
    if (buf[cr + 1] !== LF) return -1;
    i = cr + 2;
  }
  const lines: string[] = [];
  for (;;) {
    if (i + 1 >= end) return 0;
    if (buf[i] === CR) {
      if (buf[i + 1] !== LF) return -1;
      out.lines = lines;
      const cl = contentLength(lines);
      out.bodyLength = cl < 0 ? 0 : cl;
      return Number.isSafeInteger(out.bodyLength) ? i + 2 : -1;
    }
    const colon = indexOf(buf, COLON, i, end);
    if (colon <= i) return colon === -1 ? 0 : -1;
    const cr = indexOf(buf, CR, colon, end);
    if (cr === -2) return -1;
    if (cr < 0 || cr + 1 >= end) return 0;
    if (buf[cr + 1] !== LF) return -1;
    for (let k = i; k < colon; k++) if (buf[k]! <= SP || buf[k] === 127) return -1; // no spaces/controls in names
    let v = colon + 1;
    while (v < cr && buf[v] === SP) v++;
    let ve = cr;
    while (ve > v && buf[ve - 1] === SP) ve--;
    lines.push(latin1(buf, i, colon), latin1(buf, v, ve));
    if (lines.length > 200) return -1;
    i = cr + 2;
  }
}

function isHttp11(b: Buffer, i: number): boolean {
  // "HTTP/1.1"
  return b[i] === 72 && b[i + 1] === 84 && b[i + 2] === 84 && b[i + 3] === 80 && b[i + 4] === 47 && b[i + 5] === 49 && b[i + 6] === 46 && b[i + 7] === 49;
}

function indexOf(b: Buffer, byte: number, from: number, end: number): number {
  for (let i = from; i < end; i++) {
    const c = b[i]!;
    if (c === byte) return i;
    if (c === LF) return -2; // a bare LF where a CRLF-terminated token was expected
  }
  return -1;
}

/**
 * The read side of one connection: heads parsed in place from the shared read buffer; a head split over reads
 * is stashed (copied) until it is whole; body bytes are passed on as they come.
 */
abstract class Reader {
  readonly head = new Head();
  stash: Buffer | null = null;
  bodyLeft = 0;

  abstract readonly request: boolean;
  abstract onHead(h: Head): void;
  abstract onBody(body: string): void;
  abstract onComplete(): void;

  /** False on a malformed message. */
  feed(buf: Buffer, n: number): boolean {
    let start = 0;
    if (this.stash !== null) {
      buf = Buffer.concat([this.stash, buf.subarray(0, n)]);
      n = buf.length;
      this.stash = null;
    }
    while (start < n) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, n - start);
        this.bodyLeft -= take;
        this.onBody(latin1(buf, start, start + take));
        start += take;
        if (this.bodyLeft === 0) this.onComplete();
        continue;
      }
      const end = parseHead(buf, start, n, this.request, this.head);
      if (end < 0) return false;
      if (end === 0) {
        if (n - start > MAX_HEAD) return false;
        this.stash = Buffer.from(buf.subarray(start, n));
        return true;
      }
      start = end;
      this.onHead(this.head); // may clear bodyLength (a response to HEAD)
      this.bodyLeft = this.head.bodyLength;
      if (this.bodyLeft === 0) this.onComplete();
    }
    return true;
  }
}

const READ_SIZE = 64 * 1024;
const readBuffer = Buffer.allocUnsafe(READ_SIZE);
const kConn = Symbol('conn');
type Tagged<T> = Socket & { [kConn]?: T };

class Down extends Reader {
  readonly request = true;
  up: Up | null = null;

  constructor(readonly socket: Socket) {
    super();
    (socket as Tagged<Down>)[kConn] = this;
    socket.on('error', noop);
    socket.on('close', onDownClose);
    adoptOnread(socket, readBuffer, onDownRead);
    socket.resume();
  }

  onHead(h: Head): void {
    const up = pool.acquire();
    this.up = up;
    up.down = this;
    up.headRequest = h.method === 'HEAD';
    up.send(requestHead(h.method, h.url, h.lines));
  }

  onBody(body: string): void {
    this.up?.send(body);
  }

  onComplete(): void {}
}

function onDownRead(this: Socket, n: number, buf: Buffer): boolean {
  if (!(this as Tagged<Down>)[kConn]!.feed(buf, n)) this.destroy();
  return true;
}
function onDownClose(this: Socket): void {
  const d = (this as Tagged<Down>)[kConn]!;
  if (d.up !== null) d.up.socket.destroy();
}

class Up extends Reader implements UpstreamLink {
  readonly request = false;
  readonly socket: Socket;
  connected = false;
  pending = '';
  alive = true;
  down: Down | null = null;
  headRequest = false;
  resHead: string | null = null;

  constructor() {
    super();
    this.socket = upstreamSocket(args.upstreamPort, { buffer: readBuffer, callback: onUpRead });
    (this.socket as Tagged<Up>)[kConn] = this;
    this.socket.once('connect', onUpConnect);
    this.socket.on('close', onUpClose);
  }

  send(data: string): void {
    if (this.connected) writeLatin1(this.socket, data, false);
    else this.pending += data;
  }

  onHead(h: Head): void {
    this.resHead = responseHead(h.status, h.lines);
    // No body after a HEAD request's head, nor in 1xx/204/304 (RFC 9112 §6.3).
    if (this.headRequest || h.status < 200 || h.status === 204 || h.status === 304) h.bodyLength = 0;
  }

  onBody(body: string): void {
    const d = this.down;
    if (d === null) return;
    if (this.resHead !== null) {
      writeLatin1(d.socket, this.resHead + body, false);
      this.resHead = null;
    } else writeLatin1(d.socket, body, false);
  }

  onComplete(): void {
    const d = this.down;
    if (d === null) return;
    if (this.resHead !== null) writeLatin1(d.socket, this.resHead, false);
    this.resHead = null;
    d.up = null;
    this.down = null;
    pool.release(this);
  }
}

function onUpRead(this: Socket, n: number, buf: Buffer): boolean {
  if (!(this as Tagged<Up>)[kConn]!.feed(buf, n)) this.destroy();
  return true;
}
function onUpConnect(this: Socket): void {
  const u = (this as Tagged<Up>)[kConn]!;
  u.connected = true;
  if (u.pending !== '') writeLatin1(this, u.pending, false);
  u.pending = '';
}
function onUpClose(this: Socket): void {
  const u = (this as Tagged<Up>)[kConn]!;
  u.alive = false;
  u.down?.socket.destroy();
}

const pool = new Pool(() => new Up());
const server = createServer({ noDelay: true, pauseOnConnect: true }, (socket) => new Down(socket));
listen(server, args.port, 'C js-parser');
