// PROTOTYPE (B), not used by the product: minimal HTTP/1.1 keep-alive forwarder reading sockets with net's
// `onread` (one reused buffer, one JS call per read) and parsing with llhttp compiled to WebAssembly, the
// build undici ships (`npm install --no-save undici`; undici is no dependency of Pillion). The read is copied
// into wasm memory and parsed there; llhttp's callbacks are wasm → JS calls (cheap, unlike C++ → JS), and
// strings are cut straight out of wasm memory. See README.md.
// node dist/bench/prototypes/fwd-wasm-llhttp.js --port 0 --upstream PORT
import { createRequire } from 'node:module';
import { createServer, type Socket } from 'node:net';
import { writeLatin1 } from '../../src/tcp/direct-write.js';
import { Pool, adoptOnread, forwarderArgs, latin1, listen, noop, requestHead, responseHead, upstreamSocket, type UpstreamLink } from './common.js';

const args = forwarderArgs();
const require = createRequire(import.meta.url);

interface LlhttpExports {
  memory: { buffer: ArrayBuffer };
  malloc(n: number): number;
  llhttp_alloc(type: number): number;
  llhttp_free(p: number): void;
  llhttp_execute(p: number, data: number, len: number): number;
  llhttp_get_method(p: number): number;
}
interface LlhttpConstants {
  TYPE: { REQUEST: number; RESPONSE: number };
  ERROR: { OK: number };
  METHODS: Record<string, number>;
}

const constants = require('undici/lib/llhttp/constants.js') as LlhttpConstants;
const METHOD_NAMES: string[] = [];
for (const [name, n] of Object.entries(constants.METHODS)) METHOD_NAMES[n] = name;

/** A parser's JS side: what the callbacks of one llhttp_execute fill in, and its owner. */
interface Owner {
  onHead(p: WasmParser, status: number): number;
  onBody(body: string): void;
  onComplete(): void;
}
class WasmParser {
  readonly ptr: number;
  lines: string[] = [];
  url = '';
  /** The last callback was a header value (a new name starts a new line); false after a name. */
  afterValue = true;

  constructor(
    type: number,
    readonly owner: Owner,
  ) {
    const e = ll();
    this.ptr = e.llhttp_alloc(type);
    // A malloc may grow wasm memory, which detaches the old view: possibly inside another parser's callback.
    if (memView.buffer !== e.memory.buffer) memView = Buffer.from(e.memory.buffer);
  }

  /** Parses `n` bytes of `buf`; false on a parse error. */
  execute(buf: Buffer, n: number): boolean {
    const e = ll();
    if (n > IN_SIZE) return false; // reads are at most READ_SIZE
    buf.copy(memView, inPtr, 0, n);
    current = this;
    const ret = e.llhttp_execute(this.ptr, inPtr, n);
    current = null;
    return ret === constants.ERROR.OK;
  }

  free(): void {
    ll().llhttp_free(this.ptr);
  }
}

let current: WasmParser | null = null;
let memView: Buffer = Buffer.alloc(0);
const str = (at: number, len: number): string => latin1(memView, at, at + len);

const imports = {
  env: {
    // Each import takes exactly the wasm signature's parameters: V8's fast wasm → JS call needs matching arity.
    wasm_on_message_begin: (_p: number): number => {
      const p = current!;
      p.lines = [];
      p.url = '';
      p.afterValue = true;
      return 0;
    },
    wasm_on_url: (_p: number, at: number, len: number): number => {
      current!.url += str(at, len);
      return 0;
    },
    wasm_on_status: (_p: number, _at: number, _len: number): number => 0,
    wasm_on_header_field: (_p: number, at: number, len: number): number => {
      const p = current!;
      if (p.afterValue) p.lines.push(str(at, len), '');
      else p.lines[p.lines.length - 2] += str(at, len);
      p.afterValue = false;
      return 0;
    },
    wasm_on_header_value: (_p: number, at: number, len: number): number => {
      const p = current!;
      p.lines[p.lines.length - 1] += str(at, len);
      p.afterValue = true;
      return 0;
    },
    wasm_on_headers_complete: (_p: number, status: number, _upgrade: number, _keepAlive: number): number => current!.owner.onHead(current!, status),
    wasm_on_body: (_p: number, at: number, len: number): number => {
      current!.owner.onBody(str(at, len));
      return 0;
    },
    wasm_on_message_complete: (_p: number): number => {
      current!.owner.onComplete();
      return 0;
    },
  },
};

/** The bits of the WebAssembly global used here (the project's lib settings do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let llhttp: LlhttpExports | null = null;
function ll(): LlhttpExports {
  if (llhttp === null) {
    const bytes = require('undici/lib/llhttp/llhttp_simd-wasm.js') as Buffer;
    const instance = new Wasm.Instance(new Wasm.Module(bytes), imports);
    llhttp = instance.exports as LlhttpExports;
  }
  return llhttp;
}

const READ_SIZE = 64 * 1024;
const IN_SIZE = READ_SIZE;
const inPtr = ll().malloc(IN_SIZE);
memView = Buffer.from(ll().memory.buffer);
/** The one buffer every socket reads into: a read is parsed (and copied out) before the next one. */
const readBuffer = Buffer.allocUnsafe(READ_SIZE);

const kConn = Symbol('conn');
type Tagged<T> = Socket & { [kConn]?: T };

class Down implements Owner {
  readonly parser: WasmParser;
  up: Up | null = null;

  constructor(readonly socket: Socket) {
    this.parser = new WasmParser(constants.TYPE.REQUEST, this);
    (socket as Tagged<Down>)[kConn] = this;
    socket.on('error', noop);
    socket.on('close', onDownClose);
    adoptOnread(socket, readBuffer, onDownRead);
    socket.resume();
  }

  onHead(p: WasmParser): number {
    const method = METHOD_NAMES[ll().llhttp_get_method(p.ptr)]!;
    const up = pool.acquire();
    this.up = up;
    up.down = this;
    up.head = method === 'HEAD';
    up.send(requestHead(method, p.url, p.lines));
    return 0;
  }

  onBody(body: string): void {
    this.up?.send(body);
  }

  onComplete(): void {}
}

function onDownRead(this: Socket, n: number, buf: Buffer): boolean {
  const d = (this as Tagged<Down>)[kConn]!;
  if (!d.parser.execute(buf, n)) this.destroy();
  return true;
}
function onDownClose(this: Socket): void {
  const d = (this as Tagged<Down>)[kConn]!;
  d.parser.free();
  if (d.up !== null) d.up.socket.destroy();
}

class Up implements Owner, UpstreamLink {
  readonly socket: Socket;
  readonly parser: WasmParser;
  connected = false;
  pending = '';
  alive = true;
  down: Down | null = null;
  head = false;
  resHead: string | null = null;

  constructor() {
    this.parser = new WasmParser(constants.TYPE.RESPONSE, this);
    this.socket = upstreamSocket(args.upstreamPort, { buffer: readBuffer, callback: onUpRead });
    (this.socket as Tagged<Up>)[kConn] = this;
    this.socket.once('connect', onUpConnect);
    this.socket.on('close', onUpClose);
  }

  send(data: string): void {
    if (this.connected) writeLatin1(this.socket, data, false);
    else this.pending += data;
  }

  onHead(p: WasmParser, status: number): number {
    this.resHead = responseHead(status, p.lines);
    return this.head ? 1 : 0;
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
  const u = (this as Tagged<Up>)[kConn]!;
  if (!u.parser.execute(buf, n)) this.destroy();
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
  u.parser.free();
  u.down?.socket.destroy();
}

const pool = new Pool(() => new Up());
const server = createServer({ noDelay: true, pauseOnConnect: true }, (socket) => new Down(socket));
listen(server, args.port, 'B wasm-llhttp');
