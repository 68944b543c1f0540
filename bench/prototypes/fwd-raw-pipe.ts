// PROTOTYPE (D), not used by the product and not a proxy: the runtime's own floor for the benchmark's traffic.
// Each downstream connection gets its own upstream connection and bytes go across unparsed (one `onread` JS
// call per read, one native write per read), so what it costs per request is Node + libuv + the kernel for two
// reads and two writes, with no HTTP work at all. See README.md.
// node dist/bench/prototypes/fwd-raw-pipe.js --port 0 --upstream PORT
import { createServer, type Socket } from 'node:net';
import { writeLatin1 } from '../../src/tcp/direct-write.js';
import { adoptOnread, forwarderArgs, latin1, listen, noop, upstreamSocket } from './common.js';

const args = forwarderArgs();
const readBuffer = Buffer.allocUnsafe(64 * 1024);
const kPeer = Symbol('peer');
type Paired = Socket & { [kPeer]?: Paired; [kPending]?: string };
const kPending = Symbol('pending');

/** A read goes to the peer as one write (copied out of the shared buffer as a latin1 string). */
function onRead(this: Paired, n: number, buf: Buffer): boolean {
  const peer = this[kPeer]!;
  const data = latin1(buf, 0, n);
  if (peer.connecting) peer[kPending] = (peer[kPending] ?? '') + data;
  else writeLatin1(peer, data, false);
  return true;
}

function onUpConnect(this: Paired): void {
  const pending = this[kPending];
  this[kPending] = undefined;
  if (pending !== undefined) writeLatin1(this, pending, false);
}

function onClose(this: Paired): void {
  this[kPeer]?.destroy();
}

const server = createServer({ noDelay: true, pauseOnConnect: true }, (socket: Paired) => {
  socket.on('error', noop);
  socket.on('close', onClose);
  const up = upstreamSocket(args.upstreamPort, { buffer: readBuffer, callback: onRead }) as Paired;
  up.on('close', onClose);
  up.once('connect', onUpConnect);
  up[kPeer] = socket;
  socket[kPeer] = up;
  adoptOnread(socket, readBuffer, onRead);
  socket.resume();
});
listen(server, args.port, 'D raw pipe');
