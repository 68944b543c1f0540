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
