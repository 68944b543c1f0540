// The HTTP/2 pool multiplexes on one session per endpoint and opens more only when the peer's
// SETTINGS_MAX_CONCURRENT_STREAMS is reached.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

let server: http2.Http2Server;
let sessions = 0;
let lastSession: http2.ServerHttp2Session | null = null;
let maxConcurrent = 0;
let active = 0;
let proxy: RunningProxy;

beforeAll(async () => {
  // A peer that allows 2 concurrent streams per connection and answers after 150 ms.
  server = http2.createServer({ settings: { maxConcurrentStreams: 2 } });
  server.on('session', (s: http2.ServerHttp2Session) => {
    sessions++;
    lastSession = s;
  });
  server.on('stream', (stream) => {
    active++;
    maxConcurrent = Math.max(maxConcurrent, active);
    setTimeout(() => {
      active--;
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
`,
    { service: 'client' },
  );
});

afterAll(async () => {
  await proxy.close();
  await new Promise<void>((r) => server.close(() => r()));
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
});
