import { once } from 'node:events';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { directWriteStats, writeBuffer, writeLatin1 } from './direct-write.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A connected pair on 127.0.0.1: `client` is the one written to natively, `server` the peer's end. */
async function pair(allowHalfOpen = false): Promise<{ client: net.Socket; server: net.Socket }> {
  const listener = net.createServer();
  listener.on('error', () => {});
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const client = net.connect({ port: (listener.address() as net.AddressInfo).port, host: '127.0.0.1', allowHalfOpen });
  client.on('error', () => {});
  const [server] = (await once(listener, 'connection')) as [net.Socket];
  server.on('error', () => {});
  if (client.connecting) await once(client, 'connect');
  cleanup.push(() => {
    client.destroy();
    server.destroy();
    listener.close();
  });
  return { client, server };
}

function readAll(socket: net.Socket, bytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= bytes) resolve(Buffer.concat(chunks));
    });
  });
}

describe('direct writes', () => {
  it('go to the handle when nothing is queued, and are counted in bytesWritten', async () => {
    const { client, server } = await pair();
    const before = directWriteStats.direct;
    const got = readAll(server, 11);
    expect(writeLatin1(client, 'hello ', false)).toBe(true);
    expect(writeBuffer(client, Buffer.from('world'), false)).toBe(true);
    expect((await got).toString()).toBe('hello world');
    expect(directWriteStats.direct - before).toBe(2);
    expect(client.bytesWritten).toBe(11);
  });

  it('keep the byte order when the kernel takes a write in part: later writes queue behind it, and drain follows', async () => {
    const { client, server } = await pair();
    server.pause();
    // More than loopback's socket buffers hold while the peer does not read: the kernel takes a part.
    const big = Buffer.alloc(16 * 1024 * 1024, 0x61);
    const queuedBefore = directWriteStats.queued;
    const drained = once(client, 'drain');
    expect(writeBuffer(client, big, false)).toBe(false);
    expect(directWriteStats.queued - queuedBefore).toBe(1);
    // These cannot go to the handle ahead of the rest of `big`: they take socket.write.
    const directBefore = directWriteStats.direct;
    writeLatin1(client, 'tail-1|', false);
    writeBuffer(client, Buffer.from('tail-2'), false);
    expect(directWriteStats.direct).toBe(directBefore);
    const total = big.length + 13;
    const got = readAll(server, total);
    server.resume();
    await drained;
    const bytes = await got;
    expect(bytes.length).toBe(total);
    expect(bytes.subarray(0, big.length).every((b) => b === 0x61)).toBe(true);
    expect(bytes.subarray(big.length).toString()).toBe('tail-1|tail-2');
  });

  it('take socket.write while the socket is connecting or corked, and for TLS sockets', async () => {
    const { client, server } = await pair();
    const before = directWriteStats.direct;
    const got = readAll(server, 6);
    client.cork();
    writeLatin1(client, 'ab', false);
    client.uncork();
    writeLatin1(client, 'cd', true); // the caller says encrypted
    const listener = net.createServer();
    listener.listen(0, '127.0.0.1');
    await once(listener, 'listening');
    const connecting = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
    connecting.on('error', () => {});
    writeLatin1(connecting, 'x', false);
    cleanup.push(() => {
      connecting.destroy();
      listener.close();
    });
    writeLatin1(client, 'ef', false);
    expect((await got).toString()).toBe('abcdef');
    // Only the last write to `client` found nothing queued before it (the others went through the Writable).
    expect(directWriteStats.direct - before).toBeLessThanOrEqual(1);
  });

  it('destroy the socket with the write error when the peer has gone', async () => {
    const { client, server } = await pair(true);
    const errors: NodeJS.ErrnoException[] = [];
    client.on('error', (err: NodeJS.ErrnoException) => errors.push(err));
    const closed = new Promise((resolve) => client.on('close', resolve));
    // The peer closes; half-open, the client may still write: the peer's kernel answers with a reset, and a
    // write after that fails.
    server.destroy();
    await once(client, 'end');
    for (let i = 0; i < 20 && !client.destroyed; i++) {
      expect(client.writable).toBe(true);
      writeLatin1(client, 'x'.repeat(1000), false);
      await new Promise((r) => setTimeout(r, 10));
    }
    await closed;
    expect(errors.length).toBe(1);
    expect(['EPIPE', 'ECONNRESET']).toContain(errors[0]!.code);
    expect(errors[0]!.syscall).toBe('write');
  });
});

/** Everything `socket` receives until the peer's FIN. */
function untilEnd(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve) => socket.on('end', () => resolve(Buffer.concat(chunks))));
}

type Handle = { writeQueueSize: number } | null;

/**
 * What a socket user may do while a direct write still waits in libuv (the peer not reading): everything behaves
 * as if that write had been a socket.write. Each test first makes sure the write really is queued.
 */
describe('direct writes still queued in libuv', () => {
  const BIG = 16 << 20;

  async function queued(): Promise<{ client: net.Socket; server: net.Socket }> {
    const p = await pair();
    p.server.pause();
    const before = directWriteStats.queued;
    writeLatin1(p.client, 'H'.repeat(BIG), false);
    expect(directWriteStats.queued - before).toBe(1);
    return p;
  }

  it('end(): every byte, then the FIN; finish only once libuv wrote it all; bytesWritten counts it', async () => {
    const { client, server } = await queued();
    let queueAtFinish = -1;
    const finished = new Promise<void>((resolve) =>
      client.on('finish', () => {
        queueAtFinish = (client as unknown as { _handle: Handle })._handle?.writeQueueSize ?? 0;
        resolve();
      }),
    );
    client.end('END');
    const got = untilEnd(server);
    server.resume();
    const bytes = await got;
    expect(bytes.length).toBe(BIG + 3);
    expect(bytes.subarray(BIG).toString()).toBe('END');
    await finished;
    expect(queueAtFinish).toBe(0);
    expect(client.bytesWritten).toBe(BIG + 3);
  });

  it('keeps the order with cork/uncork, socket.write and more direct writes interleaved', async () => {
    const { client, server } = await queued();
    client.cork();
    client.write('a');
    writeLatin1(client, 'b', false);
    client.uncork();
    writeLatin1(client, 'c', false);
    client.write(Buffer.from('d'));
    writeBuffer(client, Buffer.from('e'), false);
    client.end('f');
    const got = untilEnd(server);
    server.resume();
    expect((await got).subarray(BIG).toString()).toBe('abcdef');
  });

  it('keeps the order when the socket is then pipe()d from a tunnel', async () => {
    const { client, server } = await queued();
    const src = await pair();
    src.server.pipe(client);
    src.client.end('tunnel-bytes');
    const got = untilEnd(server);
    server.resume();
    expect((await got).subarray(BIG).toString()).toBe('tunnel-bytes');
  });

  it('destroy(): closes without an error event, and later writes on other sockets still go direct', async () => {
    const { client } = await queued();
    const errors: Error[] = [];
    client.on('error', (err) => errors.push(err));
    const closed = new Promise((resolve) => client.on('close', resolve));
    client.destroy();
    await closed;
    expect(errors).toEqual([]);
    const other = await pair();
    const before = directWriteStats.direct;
    writeLatin1(other.client, 'hi', false);
    expect(directWriteStats.direct - before).toBe(1);
  });

  it('another socket writes directly meanwhile, and queues one of its own: both arrive whole, each drains', async () => {
    const a = await queued();
    const b = await pair();
    b.server.pause();
    for (let i = 0; i < 100; i++) writeLatin1(b.client, `b${i};`, false);
    const before = directWriteStats.queued;
    expect(writeBuffer(b.client, Buffer.alloc(BIG, 0x62), false)).toBe(false);
    expect(directWriteStats.queued - before).toBe(1);
    const drained = Promise.all([once(a.client, 'drain'), once(b.client, 'drain')]);
    a.client.end();
    b.client.end();
    const gotA = untilEnd(a.server);
    const gotB = untilEnd(b.server);
    a.server.resume();
    b.server.resume();
    const [bytesA, bytesB] = await Promise.all([gotA, gotB]);
    await drained;
    expect(bytesA.length).toBe(BIG);
    expect(bytesA.every((c) => c === 0x48)).toBe(true);
    const small = Array.from({ length: 100 }, (_, i) => `b${i};`).join('');
    expect(bytesB.subarray(0, small.length).toString()).toBe(small);
    expect(bytesB.length).toBe(small.length + BIG);
  });

  it('the peer resets: one error event with the code, then close; nothing thrown', async () => {
    const { client, server } = await queued();
    const errors: NodeJS.ErrnoException[] = [];
    client.on('error', (err: NodeJS.ErrnoException) => errors.push(err));
    const closed = new Promise((resolve) => client.on('close', resolve));
    server.resetAndDestroy();
    await closed;
    expect(errors.length).toBe(1);
    expect(['ECONNRESET', 'EPIPE']).toContain(errors[0]!.code);
  });
});

describe('direct writes and the socket around them', () => {
  it('a half-open socket (the peer sent its FIN) still writes, then ends', async () => {
    const { client, server } = await pair(true);
    server.end();
    await once(client, 'end');
    const got = untilEnd(server);
    writeLatin1(client, 'late bytes', false);
    client.end();
    expect((await got).toString()).toBe('late bytes');
  });

  it('count as activity for the idle timeout', async () => {
    const { client } = await pair();
    let timedOut = false;
    client.setTimeout(500, () => (timedOut = true));
    // 1.5 s of writes 25 ms apart: without the timer refresh, the 500 ms timeout would fire.
    for (let i = 0; i < 60; i++) {
      writeLatin1(client, 'x', false);
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(timedOut).toBe(false);
  });
});
