// PROTOTYPE (A), not used by the product: minimal HTTP/1.1 keep-alive forwarder on Node's native llhttp binding
// with consume() on both sides, as Pillion's codec does (src/http/h1-parser.ts, used as is here): the parser
// reads the socket in C++ and calls JS back per head, body chunk, message end and read. See README.md.
// node dist/bench/prototypes/fwd-native-llhttp.js --port 0 --upstream PORT
import { createServer, type Socket } from 'node:net';
import {
  METHODS,
  PendingHead,
  consumeSocket,
  createParser,
  isParseError,
  releaseParser,
  type FlatHeaders,
  type NativeParser,
  type ParseError,
  type ParserOwner,
} from '../../src/http/h1-parser.js';
import { writeLatin1 } from '../../src/tcp/direct-write.js';
import { Pool, forwarderArgs, latin1, listen, noop, requestHead, responseHead, upstreamSocket, type UpstreamLink } from './common.js';

const MAX_HEAD = 16 * 1024;
const args = forwarderArgs();

class Down implements ParserOwner {
  readonly parser: NativeParser;
  readonly partial = new PendingHead();
  up: Up | null = null;
  head = false;

  constructor(readonly socket: Socket) {
    this.parser = createParser('request', MAX_HEAD, this, false);
    socket.on('error', noop);
    socket.on('close', onDownClose);
    (socket as Socket & { [kDown]?: Down })[kDown] = this;
    if (!consumeSocket(this.parser, socket)) socket.destroy();
  }

  onHeaderLines(lines: FlatHeaders, url: string): void {
    this.partial.add(lines, url);
  }

  onHeadersComplete(_ma: number, _mi: number, lines: FlatHeaders | undefined, method: number, url: string | undefined): number {
    const up = pool.acquire();
    this.up = up;
    up.down = this;
    up.head = METHODS[method] === 'HEAD';
    up.send(requestHead(METHODS[method]!, this.partial.takeUrl(url), this.partial.takeLines(lines)));
    return 0;
  }

  onBody(chunk: Buffer): void {
    this.up?.send(latin1(chunk, 0, chunk.length));
  }

  onMessageComplete(): void {}

  onExecute(ret: number | ParseError): void {
    if (isParseError(ret)) this.socket.destroy();
  }
}

const kDown = Symbol('down');
function onDownClose(this: Socket): void {
  const d = (this as Socket & { [kDown]?: Down })[kDown]!;
  releaseParser(d.parser);
  // An exchange cut short leaves its upstream connection mid-response: not reusable.
  if (d.up !== null) d.up.socket.destroy();
}

class Up implements ParserOwner, UpstreamLink {
  readonly socket: Socket;
  readonly parser: NativeParser;
  readonly partial = new PendingHead();
  connected = false;
  pending = '';
  alive = true;
  down: Down | null = null;
  head = false;
  /** The response head, until it can go out with the first body bytes. */
  resHead: string | null = null;

  constructor() {
    this.parser = createParser('response', MAX_HEAD, this, false);
    this.socket = upstreamSocket(args.upstreamPort, null);
    (this.socket as Socket & { [kUp]?: Up })[kUp] = this;
    this.socket.once('connect', onUpConnect);
    this.socket.on('close', onUpClose);
  }

  send(data: string): void {
    if (this.connected) writeLatin1(this.socket, data, false);
    else this.pending += data;
  }

  onHeaderLines(lines: FlatHeaders, url: string): void {
    this.partial.add(lines, url);
  }

  onHeadersComplete(_ma: number, _mi: number, lines: FlatHeaders | undefined, _m: number, _u: string | undefined, status: number): number {
    this.resHead = responseHead(status, this.partial.takeLines(lines));
    return this.head ? 1 : 0;
  }

  onBody(chunk: Buffer): void {
    const d = this.down;
    if (d === null) return;
    const body = latin1(chunk, 0, chunk.length);
    if (this.resHead !== null) {
      writeLatin1(d.socket, this.resHead + body, false);
      this.resHead = null;
    } else writeLatin1(d.socket, body, false);
  }

  onMessageComplete(): void {
    const d = this.down;
    if (d === null) return;
    if (this.resHead !== null) writeLatin1(d.socket, this.resHead, false);
    this.resHead = null;
    d.up = null;
    this.down = null;
    pool.release(this);
  }

  onExecute(ret: number | ParseError): void {
    if (isParseError(ret)) this.socket.destroy();
  }
}

const kUp = Symbol('up');
function onUpConnect(this: Socket): void {
  const u = (this as Socket & { [kUp]?: Up })[kUp]!;
  u.connected = true;
  if (!consumeSocket(u.parser, this)) this.destroy();
  if (u.pending !== '') writeLatin1(this, u.pending, false);
  u.pending = '';
}
function onUpClose(this: Socket): void {
  const u = (this as Socket & { [kUp]?: Up })[kUp]!;
  u.alive = false;
  releaseParser(u.parser);
  u.down?.socket.destroy();
}

const pool = new Pool(() => new Up());
const server = createServer({ noDelay: true }, (socket) => new Down(socket));
listen(server, args.port, 'A native-llhttp');
