// Reads of a plaintext socket into buffers of our own, with no Buffer allocated per read: Node's `onread`
// (a user buffer, reused read after read), set on a socket that already exists. Node's default read path
// allocates a fresh 64 KiB buffer per read, and their external memory made V8 run a full mark-compact every
// ~100 ms under a bulk transfer. The TCP pump and the HTTP/1 body reads (src/upstream/http1-pool.ts) use it.
// Relies on how Node 20's net.Socket keeps its onread state (SLOTS below); where that is not found,
// canReadRaw() is false and callers keep Node's own read path.
import * as net from 'node:net';
import * as tls from 'node:tls';

/** Node's own read size: what a read fills on a bulk transfer. */
export const LARGE_READ_BYTES = 64 * 1024;
/** nginx's and HAProxy's per-direction buffer: what an idle TCP session holds. */
export const SMALL_READ_BYTES = 16 * 1024;
/** Free buffers kept for new readers (connection churn would allocate two per connection): 2 MiB at most. */
const POOL_SMALL_MAX = 64;
const POOL_LARGE_MAX = 16;
const smallPool: Buffer[] = [];
const largePool: Buffer[] = [];

export function takeReadBuffer(size: number): Buffer {
  return (size === SMALL_READ_BYTES ? smallPool.pop() : largePool.pop()) ?? Buffer.allocUnsafeSlow(size);
}

/** Only a buffer that no socket reads into and no pending write refers to any more. */
export function giveReadBuffer(buf: Buffer): void {
  if (buf.length === SMALL_READ_BYTES) {
    if (smallPool.length < POOL_SMALL_MAX) smallPool.push(buf);
  } else if (buf.length === LARGE_READ_BYTES && largePool.length < POOL_LARGE_MAX) largePool.push(buf);
}

interface OnreadSlots {
  readonly buffer: symbol;
  readonly callback: symbol;
  readonly generator: symbol;
}

type RawSocket = net.Socket & { _handle: { useUserBuffer?(buf: Uint8Array): void } | null } & Record<symbol, unknown>;

/**
 * `onread` is a constructor option only; a socket that exists gets it the way `net.Socket`'s constructor sets it:
 * three private symbols, found once by name on a probe socket. Null if this Node names them otherwise.
 */
const SLOTS: OnreadSlots | null = (() => {
  const onread = { buffer: () => Buffer.alloc(1), callback: () => true };
  const probe = new net.Socket({ onread } as net.SocketConstructorOpts);
  const byName = new Map(Object.getOwnPropertySymbols(probe).map((s) => [s.description, s]));
  probe.destroy();
  const buffer = byName.get('kBuffer');
  const callback = byName.get('kBufferCb');
  const generator = byName.get('kBufferGen');
  return buffer && callback && generator ? { buffer, callback, generator } : null;
})();

/** Whether `socket` can be read raw: plaintext with a native handle (TLS decrypts into buffers of its own). */
export function canReadRaw(socket: net.Socket): boolean {
  return SLOTS !== null && !(socket instanceof tls.TLSSocket) && typeof (socket as RawSocket)._handle?.useUserBuffer === 'function';
}

/**
 * Node's onread callback, called with the socket as `this` after each read of `nread` bytes into `buf`;
 * false stops reading (Node calls readStop).
 */
export type RawReadCallback = (this: net.Socket, nread: number, buf: Buffer) => boolean;
/** Called (unbound) right after each callback: the buffer the next read goes into. */
export type RawBufferGenerator = () => Buffer;

/**
 * From now on the socket's reads go into `buffer` and to `callback`, then into the buffer `generator` names, for
 * as long as no other reader (an HTTP parser's `consume`) is stacked on the handle. Once per socket: Node keeps
 * the user-buffer reader under any later one, and it goes on reading into the buffer `generator` gave last.
 * Only where `canReadRaw(socket)`.
 */
export function installRawRead(socket: net.Socket, buffer: Buffer, callback: RawReadCallback, generator: RawBufferGenerator): void {
  const raw = socket as RawSocket;
  const slots = SLOTS!;
  raw[slots.buffer] = buffer;
  raw[slots.callback] = callback;
  raw[slots.generator] = generator;
  raw._handle!.useUserBuffer!(buffer);
}
