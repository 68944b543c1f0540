// TCP through an egress port with a reader slower than the writer, both ways: every byte arrives intact and in
// order (the proxy reads into reused buffers), and a side that stops reading stops the other side's writes
// instead of making the proxy buffer everything.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { freePort, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

/** Far more than the kernel's socket buffers and the proxy's own can hold on loopback. */
const FIREHOSE_BYTES = 256 * 1024 * 1024;
/** What may sit in kernel buffers (both sockets of both hops, autotuned) and the proxy's write queues. */
const MAX_IN_FLIGHT = 48 * 1024 * 1024;
const PATTERN_BYTES = 24 * 1024 * 1024;
const PAUSE_EVERY = 256 * 1024;

let firehose: Backend & { pushed: () => number };
let blackhole: Backend & { received: () => number };
let patterned: Backend;
let proxy: RunningProxy;
const ports = { firehose: 0, blackhole: 0, patterned: 0 };

/** Bytes whose value says where they are: a reordered, repeated or overwritten chunk cannot pass for another. */
function pattern(offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = ((offset + i) * 2654435761) >>> 24;
  return buf;
}

function listen(srv: net.Server): Promise<number> {
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve((srv.address() as net.AddressInfo).port)));
}

function closer(srv: net.Server): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      srv.close(() => resolve());
      (srv as net.Server & { closeAllConnections?: () => void }).closeAllConnections?.();
    });
}

beforeAll(async () => {
  // Writes as fast as the connection takes them, up to FIREHOSE_BYTES.
  const sockets = new Set<net.Socket>();
  let pushed = 0;
  const hose = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => sockets.delete(socket));
    const chunk = Buffer.alloc(64 * 1024, 1);
    let left = FIREHOSE_BYTES;
    const pump = (): void => {
      while (left > 0 && !socket.destroyed) {
        left -= chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
    };
    pump();
    // What the kernel took (written minus what still waits in the socket's queue).
    const timer = setInterval(() => (pushed = socket.bytesWritten - socket.writableLength), 20);
    socket.on('close', () => clearInterval(timer));
  });
  firehose = { port: await listen(hose), hits: 0, close: async () => { for (const s of sockets) s.destroy(); await closer(hose)(); }, pushed: () => pushed };
  // Accepts and never reads.
  const held = new Set<net.Socket>();
  let received = 0;
  const hole = net.createServer({ pauseOnConnect: true }, (socket) => {
    held.add(socket);
    socket.on('error', () => socket.destroy());
    const timer = setInterval(() => (received = socket.bytesRead), 20);
    socket.on('close', () => clearInterval(timer));
  });
  blackhole = { port: await listen(hole), hits: 0, close: async () => { for (const s of held) s.destroy(); await closer(hole)(); }, received: () => received };
  // Sends PATTERN_BYTES of pattern, then closes.
  const pat = net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    let offset = 0;
    const pump = (): void => {
      while (offset < PATTERN_BYTES) {
        const n = Math.min(100_003, PATTERN_BYTES - offset);
        const ok = socket.write(pattern(offset, n));
        offset += n;
        if (!ok) return void socket.once('drain', pump);
      }
      socket.end();
    };
    pump();
  });
  patterned = { port: await listen(pat), hits: 0, close: closer(pat) };

  ports.firehose = await freePort();
  ports.blackhole = await freePort();
  ports.patterned = await freePort();
  const mesh = `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    egress:
      - { localPort: ${ports.firehose}, service: firehose, port: 7000 }
      - { localPort: ${ports.blackhole}, service: blackhole, port: 7000 }
      - { localPort: ${ports.patterned}, service: patterned, port: 7000 }
  - name: firehose
    ports: [{ port: 7000, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${firehose.port} }]
  - name: blackhole
    ports: [{ port: 7000, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${blackhole.port} }]
  - name: patterned
    ports: [{ port: 7000, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${patterned.port} }]
`;
  proxy = await startProxy(mesh, { service: 'client' });
});

afterAll(async () => {
  await proxy.close();
  await Promise.all([firehose.close(), blackhole.close(), patterned.close()]);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('TCP proxy backpressure', () => {
  it('delivers every byte in order to a client that reads in fits and starts', async () => {
    const got: Buffer[] = [];
    let length = 0;
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect({ port: ports.patterned, host: '127.0.0.1' });
      socket.on('error', reject);
      let nextPause = PAUSE_EVERY;
      socket.on('data', (chunk: Buffer) => {
        got.push(chunk);
        length += chunk.length;
        // Now and then stop reading long enough for the kernel's buffers to fill: the proxy's writes to us go
        // pending (holding the buffer they were read into) and it must pause its upstream read.
        if (length >= nextPause) {
          nextPause += PAUSE_EVERY;
          socket.pause();
          setTimeout(() => socket.resume(), 3);
        }
      });
      socket.on('end', () => resolve());
    });
    expect(length).toBe(PATTERN_BYTES);
    expect(Buffer.concat(got).equals(pattern(0, PATTERN_BYTES))).toBe(true);
  }, 60_000);

  it('stops reading the upstream while the client does not read', async () => {
    const socket = net.connect({ port: ports.firehose, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    socket.pause();
    await sleep(1500);
    const pushed = firehose.pushed();
    socket.destroy();
    // It got going (so the bound below means something), then stopped far short of everything.
    expect(pushed).toBeGreaterThan(1024 * 1024);
    expect(pushed).toBeLessThan(MAX_IN_FLIGHT);
  }, 20_000);

  it('stops reading the client while the upstream does not read', async () => {
    const socket = net.connect({ port: ports.blackhole, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    const chunk = Buffer.alloc(64 * 1024, 2);
    let left = FIREHOSE_BYTES;
    const pump = (): void => {
      while (left > 0 && !socket.destroyed) {
        left -= chunk.length;
        if (!socket.write(chunk)) return void socket.once('drain', pump);
      }
    };
    socket.once('connect', pump);
    await sleep(1500);
    const taken = socket.bytesWritten - socket.writableLength;
    socket.destroy();
    expect(blackhole.received()).toBe(0);
    expect(taken).toBeGreaterThan(1024 * 1024);
    expect(taken).toBeLessThan(MAX_IN_FLIGHT);
  }, 20_000);
});

describe('TCP proxy idle timeout', () => {
  it('keeps a connection that only sends, and closes it once it goes quiet', async () => {
    // A sink that reads and never answers: only the client's bytes (read by the proxy) keep the session alive.
    const sink = net.createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.resume();
    });
    const sinkPort = await listen(sink);
    const egress = await freePort();
    const mesh = `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    egress: [{ localPort: ${egress}, service: sink, port: 7000 }]
  - name: sink
    ports: [{ port: 7000, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${sinkPort} }]
`;
    const idleProxy = await startProxy(mesh, { service: 'client', admin: false, tcpProxy: { idle_timeout: { nanos: 400_000_000 } } });
    try {
      const socket = net.connect({ port: egress, host: '127.0.0.1' });
      socket.on('error', () => undefined);
      socket.resume(); // reads, so the proxy's close shows as 'end' then 'close'
      let closedAt = 0;
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.on('close', () => (closedAt = performance.now()));
      // Busy for 1.2 s (three idle timeouts), a byte every 100 ms.
      for (let i = 0; i < 12; i++) {
        socket.write('x');
        await sleep(100);
      }
      expect(closedAt).toBe(0);
      const quietFrom = performance.now();
      await closed;
      expect(closedAt - quietFrom).toBeGreaterThanOrEqual(250);
      expect(closedAt - quietFrom).toBeLessThan(3_000);
    } finally {
      await idleProxy.close();
      await closer(sink)();
    }
  }, 20_000);
});
