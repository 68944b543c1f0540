// Large response bodies going out over TLS: the server sidecar reads them from its app around the parser into
// 64 KiB buffers (readRawBody in src/upstream/http1-pool.ts) and writes them to a TLS client. A TLS socket
// encrypts a chunk as it is written, so the next read goes into the same buffer at once (h1-connection's
// lastWriteFlushed); a chunk queued behind a write in flight keeps its buffer. These check byte-exact delivery on
// that path, to a stop-and-go TLS reader and through the client sidecar with many bodies at once (a buffer
// overwritten before TLS took it shows as bytes out of place in the pattern). The queued case itself does not
// arise over loopback (the upstream pauses first), so no test here reaches it.
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawBodyStats } from '../../src/upstream/raw-body-stats.js';
import type { RunningProxy } from '../helpers/proxy.js';
import { startSidecarPair, TRUST_DOMAIN_SA } from '../tls/mesh-proxy.js';
import { TestCa, type IssuedCert } from '../tls/test-ca.js';

const TD = TRUST_DOMAIN_SA;
let ca: TestCa;
let app: net.Server;
const appSockets = new Set<net.Socket>();
let server: RunningProxy;
let client: RunningProxy;
let caller: IssuedCert;

/** Bytes whose value says where they are: a reordered, repeated or overwritten chunk cannot pass for another. */
function pattern(offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = ((offset + i) * 2654435761) >>> 24;
  return buf;
}
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  ca = new TestCa();
  // A raw app: GET /bytes/N answers N pattern bytes with a content-length, written in odd-sized pieces as the
  // socket drains, so the sidecar's reads come in every size.
  app = net.createServer((socket) => {
    appSockets.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => appSockets.delete(socket));
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const size = Number(pending.slice(0, pending.indexOf('\r\n')).split(' ')[1]!.split('/')[2]);
        pending = pending.slice(end + 4);
        socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${size}\r\n\r\n`);
        for (let at = 0; at < size; at += 90_001) socket.write(pattern(at, Math.min(90_001, size - at)));
      }
    });
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', () => r()));
  const appPort = (app.address() as net.AddressInfo).port;
  ({ server, client } = await startSidecarPair(ca, appPort));
  caller = ca.issue({ spiffeId: `${TD}/frontend`, cn: 'frontend' });
}, 30_000);

afterAll(async () => {
  await Promise.all([client?.close(), server?.close()]);
  for (const s of appSockets) s.destroy();
  await new Promise((r) => app?.close(r));
  ca?.close();
});

/** GET /bytes/`size` straight to the server sidecar's inbound over mTLS, reading in stop-and-go bursts. */
function stopAndGo(size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: server.port('inbound'),
      cert: caller.certPem,
      key: caller.keyPem,
      ca: ca.caPem,
      // The sidecar's certificate names a SPIFFE ID, not a host: this test checks bytes, not naming.
      checkServerIdentity: () => undefined,
    });
    socket.on('error', reject);
    socket.on('secureConnect', () => socket.write(`GET /bytes/${size} HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n\r\n`));
    const chunks: Buffer[] = [];
    let got = 0;
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      got += c.length;
      // Every ~256 KiB, stop reading for a moment: the sidecar's TLS writes back up behind one in flight.
      if (got > 256 * 1024) {
        got = 0;
        socket.pause();
        setTimeout(() => socket.resume(), 15);
      }
    });
    socket.on('end', () => {
      const all = Buffer.concat(chunks);
      const at = all.indexOf('\r\n\r\n');
      resolve(all.subarray(at + 4));
    });
  });
}

function viaClientSidecar(size: number, agent: http.Agent): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: client.port('outbound'), path: `/bytes/${size}`, headers: { host: 'backend:8080' }, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

describe('large response bodies written to a TLS client', () => {
  it('reach a stop-and-go TLS reader byte for byte, read around the parser', async () => {
    const before = rawBodyStats.responses;
    for (const size of [128 * 1024, 1_000_003, 6 << 20]) {
      const body = await stopAndGo(size);
      expect(body.length).toBe(size);
      expect(sha(body), `${size} bytes`).toBe(sha(pattern(0, size)));
    }
    // The three bodies went around the parser: the path this test is about.
    expect(rawBodyStats.responses - before).toBe(3);
  });

  it('reach clients of the client sidecar byte for byte, many at once over pooled mTLS connections', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 12 });
    try {
      const sizes = Array.from({ length: 36 }, (_, i) => 128 * 1024 + i * 77_777);
      const bodies = await Promise.all(sizes.map((size) => viaClientSidecar(size, agent)));
      bodies.forEach((body, i) => {
        expect(body.length).toBe(sizes[i]);
        expect(sha(body), `${sizes[i]} bytes`).toBe(sha(pattern(0, sizes[i]!)));
      });
    } finally {
      agent.destroy();
    }
  });
});
