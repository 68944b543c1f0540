// PROTOTYPE, not used by the product: shared pieces of the minimal HTTP/1.1 keep-alive forwarders that
// measure the CPU floor per proxied request under three read/parse designs (see README.md here). Every
// forwarder does the same work around its parser: header lines as JS strings, a new request head (hop-by-hop
// lines dropped, x-forwarded-for added) written to a pooled keep-alive upstream connection, and the response
// (new head + content-length body) written back as one native write (Pillion's src/tcp/direct-write.ts).
// No timeouts, limits, chunked bodies, upgrades or pipelining: this is a floor, not a proxy.
import { STATUS_CODES } from 'node:http';
import { connect, Socket, type AddressInfo, type Server } from 'node:net';
import { parseArgs } from 'node:util';

export interface ForwarderArgs {
  port: number;
  upstreamPort: number;
}

export function forwarderArgs(): ForwarderArgs {
  const { values } = parseArgs({
    options: { port: { type: 'string', default: '0' }, upstream: { type: 'string' } },
  });
  if (values.upstream === undefined) throw new Error('--upstream PORT is required');
  return { port: Number(values.port), upstreamPort: Number(values.upstream) };
}

export function listen(server: Server, port: number, name: string): void {
  server.on('error', (err) => {
    console.error(err);
    process.exit(1);
  });
  server.listen(port, '127.0.0.1', () => {
    console.log(JSON.stringify({ msg: 'listening', forwarder: name, port: (server.address() as AddressInfo).port }));
  });
}

/** Buffer.prototype.latin1Slice: what toString('latin1', ...) ends in, without its encoding switch. */
type Latin1 = Buffer & { latin1Slice(start: number, end: number): string };
export function latin1(buf: Buffer, start: number, end: number): string {
  return (buf as Latin1).latin1Slice(start, end);
}

/** connection / keep-alive (any case): the hop-by-hop lines every forwarder drops. */
export function isHopByHop(name: string): boolean {
  if (name.length !== 10) return false;
  const c = name.charCodeAt(0) | 0x20;
  return c === 0x63 ? name.toLowerCase() === 'connection' : c === 0x6b && name.toLowerCase() === 'keep-alive';
}

export const XFF_LINE = 'x-forwarded-for: 127.0.0.1\r\n';

/** The head sent upstream: request line, the client's lines minus hop-by-hop ones, x-forwarded-for. */
export function requestHead(method: string, url: string, lines: readonly string[]): string {
  let head = method + ' ' + url + ' HTTP/1.1\r\n';
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i]!;
    if (!isHopByHop(name)) head += name + ': ' + lines[i + 1]! + '\r\n';
  }
  return head + XFF_LINE + '\r\n';
}

const STATUS_LINES: string[] = [];
function statusLine(status: number): string {
  return (STATUS_LINES[status] ??= `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}\r\n`);
}

/** The head sent downstream: status line, the upstream's lines minus hop-by-hop ones. */
export function responseHead(status: number, lines: readonly string[]): string {
  let head = statusLine(status);
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i]!;
    if (!isHopByHop(name)) head += name + ': ' + lines[i + 1]! + '\r\n';
  }
  return head + '\r\n';
}

/** Content-length of a head's lines, -1 when absent. */
export function contentLength(lines: readonly string[]): number {
  for (let i = 0; i < lines.length; i += 2) {
    const name = lines[i]!;
    if (name.length === 14 && name.toLowerCase() === 'content-length') return Number(lines[i + 1]);
  }
  return -1;
}

/** The sockets' read plumbing each design brings: how an upstream socket is made and starts reading. */
export interface UpstreamLink {
  socket: Socket;
  connected: boolean;
  /** A head (and body bytes) written before the connection was up. */
  pending: string;
  alive: boolean;
}

/** Idle keep-alive upstream connections, most recently used first (as a real pool would hand them out). */
export class Pool<U extends UpstreamLink> {
  private readonly idle: U[] = [];
  created = 0;

  constructor(private readonly make: () => U) {}

  acquire(): U {
    for (;;) {
      const u = this.idle.pop();
      if (u === undefined) {
        this.created++;
        return this.make();
      }
      if (u.alive) return u;
    }
  }

  release(u: U): void {
    if (u.alive) this.idle.push(u);
  }
}

/** A TCP connection to the upstream with an 'error' handler from birth; `onread` for the designs that use it. */
export function upstreamSocket(port: number, onread: { buffer: Buffer; callback: (n: number, b: Buffer) => boolean } | null): Socket {
  const socket = onread === null ? connect({ port, host: '127.0.0.1', noDelay: true }) : connect({ port, host: '127.0.0.1', noDelay: true, onread });
  socket.on('error', noop);
  return socket;
}

export function noop(): void {}

/**
 * An accepted socket switched to `onread` (net's one-JS-call-per-read mode with a caller's buffer), which
 * net.Server cannot be asked for in Node 20: the same fields net.Socket sets from the option, found on a probe
 * socket, and the handle's useUserBuffer. Call it on a socket accepted with pauseOnConnect, then resume().
 */
const probe = new Socket({ onread: { buffer: Buffer.alloc(1), callback: () => true } } as ConstructorParameters<typeof Socket>[0]);
const symbolNamed = (d: string): symbol => {
  const s = Object.getOwnPropertySymbols(probe).find((x) => x.description === d);
  if (s === undefined) throw new Error(`net.Socket has no ${d} field: this Node cannot do onread on accepted sockets`);
  return s;
};
const kBuffer = symbolNamed('kBuffer');
const kBufferCb = symbolNamed('kBufferCb');
probe.destroy();

export function adoptOnread(socket: Socket, buffer: Buffer, callback: (this: Socket, n: number, b: Buffer) => boolean): void {
  const s = socket as unknown as Record<symbol, unknown> & { _handle: { useUserBuffer(b: Buffer): void } | null };
  if (s._handle === null) throw new Error('accepted socket has no handle');
  s[kBuffer] = buffer;
  s[kBufferCb] = callback;
  s._handle.useUserBuffer(buffer);
}
