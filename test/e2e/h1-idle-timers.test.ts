// HTTP/1 idle timeouts, downstream (the listener's idle_timeout, the linger after our close) and upstream (the pool's
// keep-alive idle time from the server's Keep-Alive hint). They are timers that check a last-activity stamp when they
// fire (coarse-clock.ts), not socket timeouts refreshed per read and write: these tests hold them to what a socket
// timeout did. Bytes moving either way keep a connection; an idle one goes within its time plus a tolerance.
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

/** Idle timeout of the proxy's listener here. */
const IDLE_MS = 400;
/** The backend's keep-alive timeout: it says `Keep-Alive: timeout=2`, so the pool keeps a free connection 1 s. */
const BACKEND_KEEP_ALIVE_MS = 2_000;
const POOL_IDLE_MS = 1_000;

let backend: http.Server;
let backendPort: number;
/** Per backend connection: when its last response finished, and when the proxy closed it (its FIN). */
interface UpstreamConnection {
  lastResponseAt: number;
  endAt: number;
  closed: Promise<void>;
}
type TaggedSocket = net.Socket & { tag?: UpstreamConnection };
const upstreamConnections: UpstreamConnection[] = [];
let proxy: RunningProxy;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  backend = http.createServer((req, res) => {
    const conn = (req.socket as TaggedSocket).tag!;
    res.on('finish', () => (conn.lastResponseAt = Date.now()));
    if (req.url === '/trickle') {
      // 8 chunks 200 ms apart: 1.6 s, longer than both the listener's idle timeout and the pool's idle time.
      res.writeHead(200, { 'content-type': 'text/plain' });
      let i = 0;
      const t = setInterval(() => {
        res.write(`chunk${i};`);
        if (++i === 8) {
          clearInterval(t);
          res.end();
        }
      }, 200);
      return;
    }
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => res.end(`got ${bytes}`));
  });
  backend.keepAliveTimeout = BACKEND_KEEP_ALIVE_MS;
  backend.on('connection', (socket: TaggedSocket) => {
    const conn: UpstreamConnection = { lastResponseAt: 0, endAt: 0, closed: new Promise<void>((r) => socket.on('close', () => r())) };
    socket.tag = conn;
    socket.on('end', () => (conn.endAt = Date.now()));
    upstreamConnections.push(conn);
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', () => r()));
  backendPort = (backend.address() as AddressInfo).port;
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backendPort} }]
`,
    { service: 'client', hcm: { codec_type: 'HTTP1', common_http_protocol_options: { idle_timeout: { nanos: IDLE_MS * 1_000_000 } } } },
  );
});

afterAll(async () => {
  await proxy.close();
  backend.closeAllConnections();
  await new Promise<void>((r) => backend.close(() => r()));
});

/** A raw client connection to the proxy that collects what it receives and when it closed. */
function rawClient(allowHalfOpen = false): { socket: net.Socket; text: () => string; closedAt: Promise<number> } {
  const socket = net.connect({ port: proxy.port('outbound'), host: '127.0.0.1', allowHalfOpen });
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => {});
  const closedAt = new Promise<number>((r) => socket.on('close', () => r(Date.now())));
  return { socket, text: () => text, closedAt };
}

async function until(read: () => string, done: (t: string) => boolean, ms = 5_000): Promise<number> {
  const deadline = Date.now() + ms;
  while (!done(read())) {
    if (Date.now() > deadline) throw new Error(`not received in ${ms} ms: ${JSON.stringify(read())}`);
    await sleep(10);
  }
  return Date.now();
}

const LAST_CHUNK = 'chunk7;\r\n0\r\n\r\n';

describe('downstream HTTP/1 idle timeout', () => {
  it('does not cut a response that trickles for longer than the idle timeout, and closes the connection once idle', async () => {
    const c = rawClient();
    try {
      c.socket.write('GET /trickle HTTP/1.1\r\nhost: web\r\n\r\n');
      const done = await until(c.text, (t) => t.endsWith(LAST_CHUNK));
      expect(c.text()).toMatch(/^HTTP\/1\.1 200 /);
      expect(c.socket.destroyed).toBe(false);
      // Idle from the response's end: closed after the idle timeout (with a tolerance), neither before nor never.
      const closedAt = await c.closedAt;
      expect(closedAt - done).toBeGreaterThanOrEqual(IDLE_MS - 50);
      expect(closedAt - done).toBeLessThan(IDLE_MS + 2_000);
    } finally {
      c.socket.destroy();
    }
  });

  it('does not cut a request body that trickles for longer than the idle timeout', async () => {
    const c = rawClient();
    try {
      c.socket.write('POST /upload HTTP/1.1\r\nhost: web\r\ncontent-length: 8\r\n\r\n');
      for (let i = 0; i < 8; i++) {
        await sleep(200);
        c.socket.write('u');
      }
      await until(c.text, (t) => t.endsWith('got 8'));
      expect(c.text()).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      c.socket.destroy();
    }
  });

  it('does not cut a request head that arrives a few bytes at a time for longer than the idle timeout', async () => {
    const c = rawClient();
    try {
      const head = 'GET /slow-head HTTP/1.1\r\nhost: web\r\n\r\n';
      // 7 pieces 200 ms apart: 1.2 s with nothing to answer yet, each pause shorter than the idle timeout.
      for (let i = 0; i < head.length; i += 6) {
        c.socket.write(head.slice(i, i + 6));
        await sleep(200);
      }
      await until(c.text, (t) => t.endsWith('got 0'));
      expect(c.text()).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      c.socket.destroy();
    }
  });

  it('keeps a connection that sends its next request within the idle timeout each time', async () => {
    const c = rawClient();
    try {
      // 6 requests 250 ms apart: 1.5 s in all, each pause shorter than the 400 ms idle timeout.
      for (let i = 1; i <= 6; i++) {
        c.socket.write('GET /ping HTTP/1.1\r\nhost: web\r\n\r\n');
        await until(c.text, (t) => (t.match(/got 0/g)?.length ?? 0) === i);
        await sleep(250);
      }
      expect(c.socket.destroyed).toBe(false);
    } finally {
      c.socket.destroy();
    }
  });

  it('after a response that says connection: close, cuts a client that keeps its side open after the linger', async () => {
    const c = rawClient(true);
    try {
      c.socket.write('GET /ping HTTP/1.1\r\nhost: web\r\nconnection: close\r\n\r\n');
      const answered = await until(c.text, (t) => t.endsWith('got 0'));
      // Our FIN came; the client neither closes nor goes quiet: bytes it sends now do not hold the connection.
      const drip = setInterval(() => c.socket.write('x'), 100);
      const closedAt = await c.closedAt;
      clearInterval(drip);
      // The 5 s linger, not the 400 ms idle timeout.
      expect(closedAt - answered).toBeGreaterThanOrEqual(4_500);
      expect(closedAt - answered).toBeLessThan(8_000);
    } finally {
      c.socket.destroy();
    }
  }, 15_000);
});

describe('upstream HTTP/1 pool idle time', () => {
  it('does not cut a pooled connection whose response trickles for longer than its keep-alive idle time', async () => {
    const c = rawClient();
    try {
      // The hint (timeout=2, so 1 s here) arrives with this very response, which takes 1.6 s.
      c.socket.write('GET /trickle HTTP/1.1\r\nhost: web\r\n\r\n');
      await until(c.text, (t) => t.endsWith(LAST_CHUNK));
      expect(c.text()).toMatch(/^HTTP\/1\.1 200 /);
    } finally {
      c.socket.destroy();
    }
  });

  it('closes a free pooled connection after the idle time from the Keep-Alive hint, before the server does', async () => {
    const c = rawClient();
    try {
      c.socket.write('GET /ping HTTP/1.1\r\nhost: web\r\n\r\n');
      await until(c.text, (t) => t.endsWith('got 0'));
    } finally {
      c.socket.destroy();
    }
    // The connection that carried it (a new one, or one the pool kept from the tests before).
    const conn = upstreamConnections.reduce((a, b) => (b.lastResponseAt > a.lastResponseAt ? b : a));
    await conn.closed;
    // The proxy's FIN (the backend would destroy it without one at its own 2 s), about 1 s after the response.
    expect(conn.endAt).toBeGreaterThan(0);
    expect(conn.endAt - conn.lastResponseAt).toBeGreaterThanOrEqual(POOL_IDLE_MS - 300);
    expect(conn.endAt - conn.lastResponseAt).toBeLessThan(BACKEND_KEEP_ALIVE_MS - 100);
  });
});
