// Small writes straight to a plaintext socket's native handle when nothing is queued before them, as Node's own
// Writable would end up doing, without its state machine: no write request object, no stream bookkeeping and
// no nextTick per write. Most HTTP/1 responses and request heads are one such write. Anything else (a socket
// connecting, corked, ending, TLS, or with bytes queued in the stream or in libuv) goes through socket.write,
// which then queues behind ours in libuv: the byte order stays. Relies on Node 20's stream_wrap binding
// (WriteWrap and streamBaseState, what net.Socket uses itself); where that is missing, every write takes
// socket.write.
import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

interface WriteReq {
  oncomplete?: (status: number) => void;
  /** Set for a write still in libuv: the socket it goes to, and whether its caller was told to wait for 'drain'. */
  socket?: Socket;
  needDrain?: boolean;
  /** Keeps a buffer libuv still points at alive. */
  buffer?: Buffer;
}
interface NativeStream {
  writeQueueSize: number;
  writeLatin1String(req: WriteReq, data: string): number;
  writeBuffer(req: WriteReq, data: Buffer): number;
}
interface StreamWrapBinding {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
}
type DirectSocket = Socket & { _handle: Partial<NativeStream> | null; connecting: boolean; _unrefTimer(): void };

const processBinding = (process as unknown as { binding(name: string): unknown }).binding.bind(process);

const binding: StreamWrapBinding | null = (() => {
  try {
    const b = processBinding('stream_wrap') as Partial<StreamWrapBinding>;
    return typeof b.WriteWrap === 'function' && b.streamBaseState instanceof Int32Array && typeof b.kLastWriteWasAsync === 'number'
      ? (b as StreamWrapBinding)
      : null;
  } catch {
    return null;
  }
})();

/**
 * The handle classes of libuv streams (TCP, and Pipe for Unix sockets): their writes are libuv's, in order, and
 * they report writeQueueSize. Not TLSWrap (it encrypts) nor JSStream (a JS duplex underneath).
 */
const LIBUV_HANDLES: readonly (abstract new () => object)[] = (() => {
  try {
    const tcp = (processBinding('tcp_wrap') as { TCP?: abstract new () => object }).TCP;
    const pipe = (processBinding('pipe_wrap') as { Pipe?: abstract new () => object }).Pipe;
    return [tcp, pipe].filter((c): c is abstract new () => object => typeof c === 'function');
  } catch {
    return [];
  }
})();

function isLibuvStream(handle: object): boolean {
  for (let i = 0; i < LIBUV_HANDLES.length; i++) if (handle instanceof LIBUV_HANDLES[i]!) return true;
  return false;
}

/**
 * The request object a native write is handed. A write the kernel takes whole never touches it (Node's
 * StreamBase only wraps it when the write has to wait), so one serves every such write; a write that waits keeps
 * it, and the next write gets a new one.
 */
let spare: WriteReq | null = binding === null ? null : new binding.WriteWrap();

/** Counters for tests and the curious: writes that went to the handle, and those of them libuv had to queue. */
export const directWriteStats = { direct: 0, queued: 0 };
/** Direct writes still in libuv, on any socket: while none is, no socket's handle needs asking (a native getter). */
let inLibuv = 0;

/**
 * The socket's native stream when a write may go straight to it: plaintext (callers pass `encrypted`), connected,
 * writable, not corked, and with nothing queued in the Writable or in libuv.
 */
function directHandle(socket: DirectSocket, encrypted: boolean): NativeStream | null {
  if (encrypted || spare === null) return null;
  const handle = socket._handle;
  if (
    handle === null ||
    socket.connecting ||
    socket.writableLength !== 0 ||
    socket.writableCorked !== 0 ||
    !socket.writable ||
    !isLibuvStream(handle) ||
    // libuv's own queue, where an earlier direct write may still wait (what the Writable holds is counted above).
    (inLibuv > 0 && handle.writeQueueSize !== 0)
  ) {
    return null;
  }
  return handle as NativeStream;
}

/** socket.write(data, 'latin1'), or a native write when directHandle allows one. Returns what socket.write would. */
export function writeLatin1(socket: Socket, data: string, encrypted: boolean): boolean {
  const s = socket as DirectSocket;
  const handle = directHandle(s, encrypted);
  if (handle === null) return socket.write(data, 'latin1');
  const req = spare!;
  return afterWrite(s, req, handle.writeLatin1String(req, data), data.length, null);
}

/** socket.write(data), or a native write when directHandle allows one. Only for a buffer nobody reuses. */
export function writeBuffer(socket: Socket, data: Buffer, encrypted: boolean): boolean {
  const s = socket as DirectSocket;
  const handle = directHandle(s, encrypted);
  if (handle === null) return socket.write(data);
  const req = spare!;
  return afterWrite(s, req, handle.writeBuffer(req, data), data.length, data);
}

function afterWrite(socket: DirectSocket, req: WriteReq, err: number, length: number, buffer: Buffer | null): boolean {
  directWriteStats.direct++;
  // A socket timeout counts from the last write, as for socket.write (without one set, a cheap no-op: the HTTP/1
  // connections keep idle timers of their own, see coarse-clock.ts).
  socket._unrefTimer();
  if (err !== 0) {
    // As net.Socket does with a failed write (EPIPE, ECONNRESET): the socket is destroyed with the error.
    socket.destroy(writeError(err));
    return false;
  }
  if (binding!.streamBaseState[binding!.kLastWriteWasAsync] === 0) return true;
  // The kernel took part of it: libuv holds the rest and owns req until it completes.
  directWriteStats.queued++;
  inLibuv++;
  spare = new binding!.WriteWrap();
  req.socket = socket;
  if (buffer !== null) req.buffer = buffer;
  // A Writable tells its writer to wait once its high-water mark is reached, and emits 'drain' after.
  req.needDrain = length >= socket.writableHighWaterMark;
  req.oncomplete = onWriteComplete;
  return !req.needDrain;
}

function onWriteComplete(this: WriteReq, status: number): void {
  inLibuv--;
  const socket = this.socket!;
  this.socket = undefined;
  this.buffer = undefined;
  if (socket.destroyed) return;
  if (status < 0) {
    socket.destroy(writeError(status));
    return;
  }
  (socket as DirectSocket)._unrefTimer();
  if (this.needDrain === true) socket.emit('drain');
}

function writeError(errno: number): Error {
  const code = getSystemErrorName(errno);
  return Object.assign(new Error(`write ${code}`), { errno, code, syscall: 'write' });
}
