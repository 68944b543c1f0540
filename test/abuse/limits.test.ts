// The bounds a sidecar keeps by default (README "Limits and overload"): request-head deadline (slowloris),
// first-byte deadline, a linger for connections we closed, concurrent streams per HTTP/2 connection, connections
// per listener, and the overload manager. Each case is what a hostile or unlucky client does, on real sockets.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { h2request, request } from '../helpers/client.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

let backend: Backend;
let slowActive = 0;
let slowMaxActive = 0;

const mesh = (port: number): string => `services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${port} }]
`;

beforeAll(async () => {
  backend = await startHttpBackend('backend', (req, res) => {
    if (req.url === '/slower') {
      setTimeout(() => res.end('slower'), 2_500);
      return;
    }
    if (req.url === '/slow') {
      slowActive++;
      slowMaxActive = Math.max(slowMaxActive, slowActive);
      setTimeout(() => {
        slowActive--;
        res.end('slow');
      }, 300);
      return;
    }
    res.end('ok');
  });
});

afterAll(async () => {
  await backend.close();
});

/** A raw client: what it received, and when the proxy closed the connection. */
function rawClient(port: number): { socket: net.Socket; received: () => string; closed: Promise<number> } {
  const started = Date.now();
  const socket = net.connect(port, '127.0.0.1');
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - started)));
  return { socket, received: () => text, closed };
}

async function metricsText(proxy: RunningProxy): Promise<string> {
  return (await request(proxy.adminPort, { path: '/metrics' })).body;
}

describe('request-head deadline (HCM request_headers_timeout; 10 s by default)', () => {
  let proxy: RunningProxy;
  beforeAll(async () => {
    // HTTP/1 only: no sniffing, so the head deadline is all that bounds a silent connection (a sniffed listener's
    // first-byte deadline comes first; see below).
    proxy = await startProxy(mesh(backend.port), { service: 'client', hcm: { request_headers_timeout: { seconds: 1 }, codec_type: 'HTTP1' } });
  });
  afterAll(async () => proxy.close());

  it('answers 408 to a head sent a byte at a time (slowloris) and closes the connection', async () => {
    const c = rawClient(proxy.port('outbound'));
    const head = 'GET / HTTP/1.1\r\nHost: backend\r\nX-Slow: ' + 'a'.repeat(40);
    let i = 0;
    const drip = setInterval(() => {
      if (i < head.length && !c.socket.destroyed) c.socket.write(head[i++]!);
    }, 100);
    const ms = await c.closed;
    clearInterval(drip);
    expect(c.received()).toMatch(/^HTTP\/1\.1 408 /);
    expect(c.received()).toContain('x-pillion-reason: request_header_timeout');
    // Within the deadline plus one sweep, plus the linger of a client that keeps sending.
    expect(ms).toBeLessThan(9_000);
    expect(backend.hits).toBe(0);
  });

  // The next four wait out the deadline on connections of their own and share nothing else (the slowloris case
  // before them checks backend.hits, so it runs alone): they run concurrently, ~3.5 s instead of ~11 s.
  it.concurrent('answers 408 to a connection that never sends a byte, and closes it', async () => {
    const c = rawClient(proxy.port('outbound'));
    c.socket.once('end', () => c.socket.end());
    await c.closed;
    expect(c.received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it.concurrent('does not cut a keep-alive connection that is idle between requests', async () => {
    const c = rawClient(proxy.port('outbound'));
    c.socket.write('GET / HTTP/1.1\r\nHost: backend\r\n\r\n');
    await new Promise((r) => setTimeout(r, 2_300));
    c.socket.write('GET / HTTP/1.1\r\nHost: backend\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    expect(c.received().match(/HTTP\/1\.1 200 /g)?.length).toBe(2);
    expect(c.socket.destroyed).toBe(false);
    c.socket.destroy();
  });

  it.concurrent('answers 408 to a later head on a keep-alive connection that stalls, timed from its first byte', async () => {
    const c = rawClient(proxy.port('outbound'));
    c.socket.write('GET / HTTP/1.1\r\nHost: backend\r\n\r\n');
    // Idle for longer than the deadline first: the wait between requests must not count against the next head.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(c.received().match(/HTTP\/1\.1 200 /g)?.length).toBe(1);
    c.socket.once('end', () => c.socket.end());
    c.socket.write('GET / HTTP/1.1\r\nHo');
    const ms = await c.closed;
    expect(c.received()).toMatch(/HTTP\/1\.1 200 [\s\S]*HTTP\/1\.1 408 /);
    expect(c.received()).toContain('x-pillion-reason: request_header_timeout');
    // Not before the deadline counted from the second head's first byte (1 s after the 1.5 s idle).
    expect(ms).toBeGreaterThanOrEqual(2_400);
  });

  it.concurrent('does not count against a head the time the proxy is not reading it (pipelined requests waiting)', async () => {
    const c = rawClient(proxy.port('outbound'));
    // Two requests and the start of a third in one write: the second waits behind the slow first, so the proxy
    // stops reading, and the third head cannot be completed until both are answered.
    c.socket.write('GET /slower HTTP/1.1\r\nHost: backend\r\n\r\nGET / HTTP/1.1\r\nHost: backend\r\n\r\nGET / HTTP/1.1\r\nHo');
    await new Promise((r) => setTimeout(r, 2_800));
    c.socket.write('st: backend\r\n\r\n');
    await new Promise((r) => setTimeout(r, 300));
    expect(c.received().match(/HTTP\/1\.1 200 /g)?.length).toBe(3);
    expect(c.received()).not.toContain(' 408 ');
    c.socket.destroy();
  });

  it('counts the 408s as local replies', async () => {
    expect(await metricsText(proxy)).toMatch(/pillion_local_replies_total\{reason="request_header_timeout"\} [1-9]/);
  });
});

describe('first-byte deadline on a sniffed listener (Listener listener_filters_timeout; 15 s by default)', () => {
  it('closes a connection that stays silent, and counts it', async () => {
    const proxy = await startProxy(mesh(backend.port), {
      service: 'client',
      listener: { listener_filters_timeout: { seconds: 1 } },
      hcm: { request_headers_timeout: { seconds: 30 } },
    });
    try {
      const c = rawClient(proxy.port('outbound'));
      const ms = await c.closed;
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(5_000);
      expect(await metricsText(proxy)).toMatch(/pillion_downstream_connections_rejected_total\{listener="outbound",reason="first_byte_timeout"\} 1/);
    } finally {
      await proxy.close();
    }
  });
});

describe('HTTP/2 concurrent streams per connection (HCM http2_protocol_options.max_concurrent_streams)', () => {
  it('advertises 1024 by default', async () => {
    const proxy = await startProxy(mesh(backend.port), { service: 'client', admin: false });
    const session = http2.connect(`http://127.0.0.1:${proxy.port('outbound')}`);
    try {
      await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
      expect(session.remoteSettings.maxConcurrentStreams).toBe(1024);
    } finally {
      session.destroy();
      await proxy.close();
    }
  });

  it('holds a client to the configured limit', async () => {
    const proxy = await startProxy(mesh(backend.port), {
      service: 'client',
      admin: false,
      hcm: { http2_protocol_options: { max_concurrent_streams: { value: 4 } } },
    });
    const session = http2.connect(`http://127.0.0.1:${proxy.port('outbound')}`);
    session.on('error', () => {});
    try {
      await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
      expect(session.remoteSettings.maxConcurrentStreams).toBe(4);
      slowMaxActive = 0;
      // The client queues what the limit does not allow; the backend never sees more than 4 at once.
      const statuses = await Promise.all(
        Array.from({ length: 12 }, () =>
          new Promise<number>((resolve) => {
            const s = session.request({ ':path': '/slow', ':authority': 'backend' });
            let status = 0;
            s.on('response', (h) => (status = Number(h[':status'])));
            s.on('error', () => resolve(-1));
            s.on('close', () => resolve(status));
            s.resume();
          }),
        ),
      );
      expect(statuses.every((s) => s === 200)).toBe(true);
      expect(slowMaxActive).toBeLessThanOrEqual(4);
      expect(slowMaxActive).toBeGreaterThan(1);
    } finally {
      session.destroy();
      await proxy.close();
    }
  });
});

describe('HTTP/2 connections: idle timeout and drain', () => {
  /** A Node HTTP/2 client: its GOAWAY code (-1: none came) and when its connection closed. */
  function h2client(port: number): { session: http2.ClientHttp2Session; goaway: () => number; closed: Promise<number> } {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    let code = -1;
    session.on('goaway', (c: number) => (code = c));
    const closed = new Promise<number>((resolve) => session.on('close', () => resolve(Date.now())));
    return { session, goaway: () => code, closed };
  }

  it('a connection idle past the listener idle timeout gets GOAWAY and is closed; an open stream holds it', async () => {
    const proxy = await startProxy(mesh(backend.port), {
      service: 'client',
      admin: false,
      hcm: { common_http_protocol_options: { idle_timeout: { seconds: 1 } } },
    });
    const c = h2client(proxy.port('outbound'));
    try {
      // 2.5 s with a stream open: longer than the idle timeout, and not cut.
      expect((await h2request(c.session, { ':path': '/slower', ':authority': 'backend' })).body).toBe('slower');
      const doneAt = Date.now();
      const closedAt = await c.closed;
      expect(c.goaway()).toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(closedAt - doneAt).toBeGreaterThanOrEqual(900);
      expect(closedAt - doneAt).toBeLessThan(3_500);
    } finally {
      c.session.destroy();
      await proxy.close();
    }
  });

  it('a drain sends GOAWAY: the stream in flight finishes, then the connection closes', async () => {
    const proxy = await startProxy(mesh(backend.port), { service: 'client', admin: false });
    const c = h2client(proxy.port('outbound'));
    try {
      expect((await h2request(c.session, { ':path': '/', ':authority': 'backend' })).body).toBe('ok');
      const inFlight = h2request(c.session, { ':path': '/slow', ':authority': 'backend' });
      await new Promise((r) => setTimeout(r, 100));
      const drained = proxy.proxy.drain();
      expect((await inFlight).body).toBe('slow');
      await c.closed;
      expect(c.goaway()).toBe(http2.constants.NGHTTP2_NO_ERROR);
      await drained;
    } finally {
      c.session.destroy();
      await proxy.close();
    }
  });
});

describe('an upgraded connection (WebSocket) that goes silent', () => {
  it('is closed on both sides after the listener idle timeout', async () => {
    const wsServer = http.createServer();
    let upstreamEnded = false;
    const upstreamSockets: net.Socket[] = [];
    wsServer.on('upgrade', (_req, socket: net.Socket) => {
      upstreamSockets.push(socket);
      socket.on('error', () => {});
      socket.on('end', () => (upstreamEnded = true));
      socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
    });
    await new Promise<void>((r) => wsServer.listen(0, '127.0.0.1', () => r()));
    const wsPort = (wsServer.address() as net.AddressInfo).port;
    const proxy = await startProxy(mesh(wsPort), {
      service: 'client',
      admin: false,
      hcm: { common_http_protocol_options: { idle_timeout: { seconds: 1 } } },
    });
    try {
      const c = rawClient(proxy.port('outbound'));
      c.socket.write('GET /chat HTTP/1.1\r\nHost: backend\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
      const ms = await c.closed;
      expect(c.received()).toMatch(/^HTTP\/1\.1 101 /);
      expect(ms).toBeGreaterThanOrEqual(900);
      expect(ms).toBeLessThan(5_000);
      await new Promise((r) => setTimeout(r, 100));
      expect(upstreamEnded).toBe(true);
    } finally {
      await proxy.close();
      for (const socket of upstreamSockets) socket.destroy();
      await new Promise<void>((r) => wsServer.close(() => r()));
    }
  });
});

describe('pipelined requests per HTTP/1 connection', () => {
  it('answers the first 65 (one active, 64 queued), then 503 pipeline_overflow and a close', async () => {
    const proxy = await startProxy(mesh(backend.port), { service: 'client', admin: false });
    try {
      const c = rawClient(proxy.port('outbound'));
      // One write, one read on the proxy's side: 200 heads parsed before any answer comes back.
      c.socket.write('GET / HTTP/1.1\r\nHost: backend\r\n\r\n'.repeat(200));
      await c.closed;
      const text = c.received();
      expect(text.match(/HTTP\/1\.1 200 /g)?.length).toBe(65);
      const last = text.slice(text.lastIndexOf('HTTP/1.1 '));
      expect(last).toMatch(/^HTTP\/1\.1 503 /);
      expect(last).toContain('x-pillion-reason: pipeline_overflow');
    } finally {
      await proxy.close();
    }
  });
});

describe('header lines per request (HCM common_http_protocol_options.max_headers_count; 100 by default)', () => {
  const lines = (n: number) => Array.from({ length: n }, (_, i) => `x-h${i}: v`).join('\r\n');

  it('HTTP/1: 100 lines pass (Host among them), 101 get 431 and a close', async () => {
    const proxy = await startProxy(mesh(backend.port), { service: 'client', admin: false });
    try {
      const ok = rawClient(proxy.port('outbound'));
      ok.socket.write(`GET / HTTP/1.1\r\nHost: backend\r\nConnection: close\r\n${lines(98)}\r\n\r\n`);
      await ok.closed;
      expect(ok.received()).toMatch(/^HTTP\/1\.1 200 /);
      const tooMany = rawClient(proxy.port('outbound'));
      tooMany.socket.write(`GET / HTTP/1.1\r\nHost: backend\r\n${lines(100)}\r\n\r\n`);
      await tooMany.closed;
      expect(tooMany.received()).toMatch(/^HTTP\/1\.1 431 /);
      expect(tooMany.received()).toContain('x-pillion-reason: headers_too_large');
    } finally {
      await proxy.close();
    }
  });

  it('HTTP/2: a request with more lines gets 431 headers_too_large (counted), the connection serves on', async () => {
    const proxy = await startProxy(mesh(backend.port), { service: 'client' });
    const session = http2.connect(`http://127.0.0.1:${proxy.port('outbound')}`);
    session.on('error', () => {});
    try {
      const outcome = (extra: number) =>
        new Promise<string>((resolve) => {
          const headers: http2.OutgoingHttpHeaders = { ':path': '/', ':authority': 'backend' };
          for (let i = 0; i < extra; i++) headers[`x-h${i}`] = 'v';
          const s = session.request(headers);
          s.on('response', (h) => resolve(String(h[':status'])));
          s.on('error', () => resolve('refused'));
          s.on('close', () => resolve(`closed ${s.rstCode}`));
          s.resume();
        });
      // 110 lines pass Node's own default (128 pairs) but not ours (100 lines + 4 pseudo headers). The session answers
      // the stream itself (no exchange is made), as HTTP/1 does, and SREs see it among the local replies.
      expect(await outcome(110)).toBe('431');
      expect(await outcome(10)).toBe('200');
      expect(await metricsText(proxy)).toMatch(/pillion_local_replies_total\{reason="headers_too_large"\} 1\b/);
    } finally {
      session.destroy();
      await proxy.close();
    }
  });
});

describe('connections per listener', () => {
  it('closes connections past the limit at accept, counts them, and takes new ones once below it', async () => {
    const proxy = await startProxy(mesh(backend.port), { service: 'client', proxyOptions: { maxConnectionsPerListener: 3 } });
    try {
      const port = proxy.port('outbound');
      const held = [rawClient(port), rawClient(port), rawClient(port)];
      await Promise.all(held.map((c) => new Promise((r) => c.socket.once('connect', r))));
      await new Promise((r) => setTimeout(r, 100));
      const refused = rawClient(port);
      await refused.closed;
      expect(refused.received()).toBe('');
      expect(await metricsText(proxy)).toMatch(/pillion_downstream_connections_rejected_total\{listener="outbound",reason="limit"\} 1/);
      held[0]!.socket.destroy();
      await held[0]!.closed;
      await new Promise((r) => setTimeout(r, 100));
      expect((await request(port, { host: 'backend' })).status).toBe(200);
      for (const c of held) c.socket.destroy();
    } finally {
      await proxy.close();
    }
  });
});

describe('overload manager', () => {
  it('while overloaded: new requests get 503 overload, new connections are refused; after it, both work again', async () => {
    const proxy = await startProxy(mesh(backend.port), { service: 'client' });
    try {
      const port = proxy.port('outbound');
      const c = rawClient(port);
      await new Promise((r) => c.socket.once('connect', r));
      // The memory thresholds are the manager's (unit-tested with samples in src/process/overload.test.ts, and
      // end to end with `--overload-rss-mb` in test/abuse/overload-process.test.ts); here, what the data path does.
      proxy.proxy.overload.active = true;
      c.socket.write('GET / HTTP/1.1\r\nHost: backend\r\n\r\n');
      await new Promise((r) => setTimeout(r, 200));
      expect(c.received()).toMatch(/^HTTP\/1\.1 503 /);
      expect(c.received()).toContain('x-pillion-reason: overload');
      const refused = rawClient(port);
      await refused.closed;
      expect(refused.received()).toBe('');
      const text = await metricsText(proxy);
      expect(text).toMatch(/pillion_downstream_connections_rejected_total\{listener="outbound",reason="overload"\} 1/);
      expect(text).toMatch(/pillion_local_replies_total\{reason="overload"\} 1/);
      proxy.proxy.overload.active = false;
      expect((await request(port, { host: 'backend' })).status).toBe(200);
      c.socket.destroy();
    } finally {
      await proxy.close();
    }
  });
});
