// The HTTP/2 pool multiplexes on one session per endpoint and opens more only when the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS is reached.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { request } from '../helpers/client.js';

let server: http2.Http2Server;
let sessions = 0;
let lastSession: http2.ServerHttp2Session | null = null;
let maxConcurrent = 0;
let active = 0;
let proxy: RunningProxy;
/** A peer that allows one stream per connection and holds each for 200 ms; the order it saw paths in. */
let narrow: http2.Http2Server;
const narrowOrder: string[] = [];
let closedPort = 0;
/** A peer that reads request bodies only after `sinkHoldMs` (then counts and hashes them). */
let sink: http2.Http2Server;
let sinkHoldMs = 0;

beforeAll(async () => {
  narrow = http2.createServer({ settings: { maxConcurrentStreams: 1 } });
  narrow.on('error', () => {});
  narrow.on('session', (s) => s.on('error', () => {}));
  narrow.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    narrowOrder.push(headers[':path'] as string);
    setTimeout(() => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200 });
      stream.end(headers[':path'] as string);
    }, 200);
  });
  await new Promise<void>((r) => narrow.listen(0, '127.0.0.1', () => r()));
  sink = http2.createServer();
  sink.on('error', () => {});
  sink.on('session', (s) => s.on('error', () => {}));
  sink.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.pause();
    const hash = createHash('sha256');
    let bytes = 0;
    stream.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    stream.on('end', () => {
      stream.respond({ ':status': 200 });
      stream.end(`${bytes} ${hash.digest('hex')}`);
    });
    setTimeout(() => stream.resume(), sinkHoldMs);
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  const spare = http2.createServer();
  spare.on('error', () => {});
  await new Promise<void>((r) => spare.listen(0, '127.0.0.1', () => r()));
  closedPort = (spare.address() as AddressInfo).port;
  await new Promise<void>((r) => spare.close(() => r()));
  // A peer that allows 2 concurrent streams per connection and answers after 150 ms.
  server = http2.createServer({ settings: { maxConcurrentStreams: 2 } });
  server.on('error', () => {});
  server.on('session', (s: http2.ServerHttp2Session) => {
    s.on('error', () => {});
    sessions++;
    lastSession = s;
  });
  server.on('stream', (stream) => {
    stream.on('error', () => {});
    active++;
    maxConcurrent = Math.max(maxConcurrent, active);
    setTimeout(() => {
      active--;
      if (stream.destroyed) return;
      stream.respond({ ':status': 200 });
      stream.end('ok');
    }, 150);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: h2
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${port} }]
  - name: narrow
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${(narrow.address() as AddressInfo).port} }]
    policy:
      circuitBreakers: { maxConnections: 1, maxPendingRequests: 2 }
  - name: sink
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${(sink.address() as AddressInfo).port} }]
  - name: refused
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${closedPort} }]
`,
    { service: 'client' },
  );
});

afterAll(async () => {
  await proxy.close();
  await new Promise<void>((r) => server.close(() => r()));
  await new Promise<void>((r) => narrow.close(() => r()));
  await new Promise<void>((r) => sink.close(() => r()));
});

describe('HTTP/2 upstream pool', () => {
  it('one session for sequential requests', async () => {
    for (let i = 0; i < 3; i++) expect((await request(proxy.port('outbound'), { host: 'h2' })).status).toBe(200);
    expect(sessions).toBe(1);
  });

  it('opens more sessions when the stream limit is reached, never exceeding it per session', async () => {
    const replies = await Promise.all(Array.from({ length: 8 }, () => request(proxy.port('outbound'), { host: 'h2' })));
    expect(replies.every((r) => r.status === 200 && r.body === 'ok')).toBe(true);
    // 8 concurrent streams at 2 per session: 4 sessions in all (the first one is reused).
    expect(sessions).toBe(4);
    expect(maxConcurrent).toBe(8);
  });

  it('both of its HTTP/2 sessions let the peer send 1 MiB on the connection, not the protocol default 64 KiB', async () => {
    // Downstream: a client's own session to the proxy, after one exchange (SETTINGS and WINDOW_UPDATE are in).
    const client = http2.connect(`http://127.0.0.1:${proxy.port('outbound')}`);
    client.on('error', () => {});
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const stream = client.request({ ':path': '/', ':authority': 'h2:8080' });
        stream.on('response', (h) => resolve(Number(h[':status'])));
        stream.on('error', reject);
        stream.resume();
      });
      expect(status).toBe(200);
      expect(client.state.remoteWindowSize).toBeGreaterThan(1_000_000);
    } finally {
      client.destroy();
    }
    // Upstream: what the endpoint may send the proxy on its session.
    expect(lastSession?.state.remoteWindowSize).toBeGreaterThan(1_000_000);
  });

  it('past max_connections, requests wait in order for a stream; past max_pending_requests, 503 overflow at once', async () => {
    // Warm: the session is up and the peer's limit of 1 stream known before the burst.
    expect((await request(proxy.port('outbound'), { host: 'narrow', path: '/warm' })).status).toBe(200);
    narrowOrder.length = 0;
    const replies: Promise<{ status: number; body: string; reason: unknown }>[] = [];
    for (const path of ['/a', '/b', '/c', '/d']) {
      replies.push(request(proxy.port('outbound'), { host: 'narrow', path }).then((r) => ({ status: r.status, body: r.body, reason: r.headers['x-pillion-reason'] })));
      await new Promise((r) => setTimeout(r, 20)); // arrival order
    }
    const got = await Promise.all(replies);
    // One stream on the one connection allowed, two waiting: the fourth overflows.
    expect(got.map((r) => r.status)).toEqual([200, 200, 200, 503]);
    expect(got[3]!.reason).toBe('overflow');
    expect(narrowOrder).toEqual(['/a', '/b', '/c']);
    expect(got.slice(0, 3).map((r) => r.body)).toEqual(['/a', '/b', '/c']);
  });

  it('a refused connect is a connect failure: 503 connect_failure', async () => {
    const r = await request(proxy.port('outbound'), { host: 'refused' });
    expect(r.status).toBe(503);
    expect(r.headers['x-pillion-reason']).toBe('connect_failure');
    expect(r.body).toContain('ECONNREFUSED');
  });

  it('a request body waits for the upstream (flow control reaches the client) and arrives whole', async () => {
    const total = 32 << 20;
    const body = Buffer.alloc(total);
    for (let i = 0; i < total; i += 4096) body.writeUInt32BE(i, i);
    sinkHoldMs = 600;
    const client = net.connect(proxy.port('outbound'), '127.0.0.1');
    client.on('error', () => {});
    let response = '';
    client.on('data', (d: Buffer) => (response += d.toString('latin1')));
    const closed = new Promise<void>((r) => client.on('close', () => r()));
    await new Promise((r) => client.once('connect', r));
    client.write(`POST /upload HTTP/1.1\r\nhost: sink\r\ncontent-length: ${total}\r\nconnection: close\r\n\r\n`);
    client.write(body);
    await new Promise((r) => setTimeout(r, 400));
    // While the upstream reads nothing, the proxy stops reading the client: what it took is bounded by the
    // stream window, the proxy's per-stream queue and the kernel's socket buffers, far from the whole body.
    const inFlight = client.bytesWritten - client.writableLength;
    expect(inFlight, `${inFlight} bytes left the client while the upstream read nothing`).toBeLessThan(total / 2);
    await closed;
    expect(response).toMatch(/^HTTP\/1\.1 200/);
    expect(response).toContain(`${total} ${createHash('sha256').update(body).digest('hex')}`);
    sinkHoldMs = 0;
  });

  it('an HTTP/2 client\'s body to an HTTP/2 upstream waits for it (the client\'s window stays shut) and arrives whole', async () => {
    // The proxy hands the client's DATA straight to the upstream stream: only the upstream's reading may open the
    // client's stream window again.
    const total = 32 << 20;
    const body = Buffer.alloc(total);
    for (let i = 0; i < total; i += 4096) body.writeUInt32BE(i, i);
    sinkHoldMs = 600;
    const session = http2.connect(`http://127.0.0.1:${proxy.port('outbound')}`);
    session.on('error', () => {});
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/upload', ':authority': 'sink:8080' });
      stream.on('error', () => {});
      let status = 0;
      let response = '';
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.setEncoding('latin1');
      stream.on('data', (d: string) => (response += d));
      const ended = new Promise<void>((r) => stream.on('close', () => r()));
      stream.end(body);
      await new Promise((r) => setTimeout(r, 400));
      // While the upstream reads nothing, what left the client is bounded by the stream windows and the
      // proxy's per-stream queue: far from the whole body.
      const inFlight = total - stream.bufferSize;
      expect(inFlight, `${inFlight} bytes left the client while the upstream read nothing`).toBeLessThan(total / 4);
      await ended;
      expect(status).toBe(200);
      expect(response).toBe(`${total} ${createHash('sha256').update(body).digest('hex')}`);
    } finally {
      sinkHoldMs = 0;
      session.close();
    }
  });
});
