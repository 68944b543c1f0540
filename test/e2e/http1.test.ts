// HTTP/1.1 through the outbound listener: routing by Host, absolute-form, headers, bodies, bad input.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as net from 'node:net';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { startHttpBackend, deadPort, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

let backend: Backend;
let slow: Backend;
let proxy: RunningProxy;
const logDir = mkdtempSync(join(tmpdir(), 'pillion-http1-'));
let port: number;
/** Upgrade-capable upstreams: answer an Upgrade with 101 naming themselves and what they saw; a request with JSON. */
const wsServers: http.Server[] = [];

async function startUpgradeBackend(name: string): Promise<number> {
  const server = http.createServer((req, res) => {
    res.setHeader('x-backend', name);
    res.end(JSON.stringify({ url: req.url, host: req.headers.host }));
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: net.Socket) => {
    socket.on('error', () => {});
    const seenHosts = req.rawHeaders.filter((_v, i) => i % 2 === 0 && req.rawHeaders[i]!.toLowerCase() === 'host').length;
    socket.end(
      `HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nx-backend: ${name}\r\n` +
        `x-seen-url: ${req.url}\r\nx-seen-host: ${req.headers.host}\r\nx-seen-hosts: ${seenHosts}\r\n` +
        `x-seen-xfcc: ${req.headers['x-forwarded-client-cert'] ?? '-'}\r\n\r\n`,
    );
  });
  server.on('clientError', (_e, sock) => sock.destroy());
  wsServers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as AddressInfo).port;
}

beforeAll(async () => {
  backend = await startHttpBackend('backend');
  slow = await startHttpBackend('slow', (_req, res) => {
    setTimeout(() => res.end('late'), 2_000).unref();
  });
  const dead = await deadPort();
  const wsPlain = await startUpgradeBackend('ws-plain');
  const wsTls = await startUpgradeBackend('ws-tls');
  proxy = await startProxy(
    `
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]
  - name: slow
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${slow.port} }]
    policy: { timeout: 300ms }
  - name: dead
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${dead} }]
    policy: { connectTimeout: 500ms }
  - name: ws
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${wsPlain} }]
    routes:
      - match: { prefix: /chat, headers: [{ name: ":scheme", exact: https }] }
        to: { service: wstls }
  - name: wstls
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${wsTls} }]
`,
    { service: 'frontend', accessLog: join(logDir, 'access.log') },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await backend.close();
  await slow.close();
  rmSync(logDir, { recursive: true, force: true });
  for (const server of wsServers) {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

/** One raw request head on a fresh connection; resolves with the answer's head lines (lowercased names). */
function rawHead(head: string): Promise<{ status: number; headers: Record<string, string> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.setTimeout(5_000, () => socket.destroy(new Error('no answer')));
    socket.on('error', reject);
    socket.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.destroy();
      const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
      resolve({ status: Number(statusLine!.split(' ')[1]), headers });
    });
    socket.write(head);
  });
}

describe('HTTP/1.1 outbound', () => {
  it.each(['backend', 'backend.default', 'backend.default.svc.cluster.local', 'backend:8080', 'BACKEND.default.svc:8080'])(
    'routes Host %s to the service',
    async (host) => {
      const reply = await request(port, { host, path: '/hello?x=1' });
      expect(reply.status).toBe(200);
      const body = JSON.parse(reply.body);
      expect(body.name).toBe('backend');
      expect(body.url).toBe('/hello?x=1');
    },
  );

  it('accepts absolute-form requests (HTTP_PROXY style)', async () => {
    const reply = await request(port, { path: 'http://backend.default:8080/abs', host: 'ignored' });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).url).toBe('/abs');
  });

  it('adds x-forwarded-for and x-request-id, strips hop-by-hop headers', async () => {
    const reply = await request(port, {
      host: 'backend',
      headers: { connection: 'keep-alive, x-hop', 'x-hop': 'secret', 'keep-alive': 'timeout=5', 'x-keep': 'yes' },
    });
    const seen = JSON.parse(reply.body).headers;
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen['x-hop']).toBeUndefined();
    expect(seen['keep-alive']).toBeUndefined();
    expect(seen['x-keep']).toBe('yes');
  });

  it('propagates an existing x-request-id', async () => {
    const reply = await request(port, { host: 'backend', headers: { 'x-request-id': 'abc-123' } });
    expect(JSON.parse(reply.body).headers['x-request-id']).toBe('abc-123');
  });

  it('forwards request bodies, fixed-length and chunked', async () => {
    const fixed = await request(port, { host: 'backend', method: 'POST', body: 'hello body' });
    expect(JSON.parse(fixed.body).body).toBe('hello body');
    const chunked = await request(port, {
      host: 'backend',
      method: 'POST',
      headers: { 'transfer-encoding': 'chunked' },
      body: 'chunked body',
    });
    expect(JSON.parse(chunked.body).body).toBe('chunked body');
  });

  it('answers 404 no_route for an unknown host', async () => {
    const reply = await request(port, { host: 'nowhere.example' });
    expect(reply.status).toBe(404);
    expect(reply.headers['x-pillion-reason']).toBe('no_route');
    // The proxy is the origin of its own replies: they carry a Date (RFC 9110 §6.6.1).
    expect(Math.abs(Date.parse(reply.headers.date ?? '') - Date.now())).toBeLessThan(5_000);
  });

  it('answers 503 connect_failure when the upstream refuses', async () => {
    const reply = await request(port, { host: 'dead' });
    expect(reply.status).toBe(503);
    expect(reply.headers['x-pillion-reason']).toBe('connect_failure');
  });

  it('answers 504 upstream_timeout when the upstream is too slow', async () => {
    const reply = await request(port, { host: 'slow' });
    expect(reply.status).toBe(504);
    expect(reply.headers['x-pillion-reason']).toBe('upstream_timeout');
  });

  it('answers 400 to a malformed request and closes', async () => {
    const raw = await rawExchange(port, 'GARBAGE\r\n\r\n');
    expect(raw).toMatch(/^HTTP\/1.1 400 /);
    expect(raw).toContain('x-pillion-reason: bad_request');
    expect(raw).toMatch(/\r\ndate: \w{3}, \d{2} \w{3} \d{4} /);
  });

  it('answers 431 when request headers exceed the limit', async () => {
    const big = 'x'.repeat(70 * 1024);
    const raw = await rawExchange(port, `GET / HTTP/1.1\r\nhost: backend\r\nx-big: ${big}\r\n\r\n`);
    expect(raw).toMatch(/^HTTP\/1.1 431 /);
  });
});

function rawExchange(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(text));
    let out = '';
    socket.on('data', (c) => (out += c.toString()));
    socket.on('end', () => resolve(out));
    socket.on('close', () => resolve(out));
    socket.on('error', (err) => (out ? resolve(out) : reject(err)));
  });
}

describe('HTTP/1.1 Upgrade with an absolute-form target', () => {
  const upgrade = (target: string, host: string): Promise<{ status: number; headers: Record<string, string> }> =>
    rawHead(`GET ${target} HTTP/1.1\r\nhost: ${host}\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n`);

  it('routes as a plain request does: the target\'s authority over Host, its path, its scheme for :scheme matchers', async () => {
    // Origin-form over cleartext: http.
    let r = await upgrade('/chat', 'ws');
    expect(r.status).toBe(101);
    expect(r.headers['x-backend']).toBe('ws-plain');
    // Absolute-form: authority and path from the target; the upstream gets origin-form and one Host, the target's.
    r = await upgrade('http://ws/chat?x=1', 'ignored');
    expect(r.status).toBe(101);
    expect(r.headers).toMatchObject({ 'x-backend': 'ws-plain', 'x-seen-url': '/chat?x=1', 'x-seen-host': 'ws', 'x-seen-hosts': '1' });
    // An https target matches `:scheme: https` (the client's choice, as for a plain request).
    r = await upgrade('https://ws/chat', 'ws');
    expect(r.status).toBe(101);
    expect(r.headers).toMatchObject({ 'x-backend': 'ws-tls', 'x-seen-url': '/chat', 'x-seen-host': 'ws' });
    r = await upgrade('HTTPS://ws:8080', 'ws');
    expect(r.headers['x-backend'], 'no path: /, which the /chat route does not match').toBe('ws-plain');
    expect(r.headers['x-seen-url']).toBe('/');
    // The same targets without Upgrade take the exchange path: the same routes.
    for (const [target, backend] of [['http://ws/chat', 'ws-plain'], ['https://ws/chat', 'ws-tls']] as const) {
      const plain = await request(port, { path: target, host: 'ignored' });
      expect(plain.headers['x-backend'], target).toBe(backend);
    }
  });
});

/** pillion_local_replies_total{reason="bad_request"} from the admin port. */
async function badRequests(): Promise<number> {
  const text = (await request(proxy.adminPort, { path: '/metrics' })).body;
  return Number(/pillion_local_replies_total\{reason="bad_request"\} (\d+)/.exec(text)?.[1] ?? 0);
}

describe('HTTP/1.1 Upgrade without exactly one Host (RFC 9112 §3.2)', () => {
  const UPGRADE = 'upgrade: websocket\r\nconnection: upgrade\r\n';

  it('is answered 400 bad_request as a plain request is, counted, and the connection closes', async () => {
    // The plain request's answer, for comparison (the exchange path).
    const plain = await rawHead('GET /chat HTTP/1.1\r\n\r\n');
    expect(plain.status).toBe(400);
    expect(plain.headers['x-pillion-reason']).toBe('bad_request');
    for (const hosts of ['', 'host: ws\r\nhost: ws\r\n']) {
      const before = await badRequests();
      const raw = await rawExchange(port, `GET /chat HTTP/1.1\r\n${hosts}${UPGRADE}\r\n`);
      expect(raw, JSON.stringify(hosts)).toMatch(/^HTTP\/1.1 400 /);
      expect(raw).toContain('x-pillion-reason: bad_request');
      expect(raw).toContain('connection: close');
      expect(raw).toMatch(/\r\n\r\nmalformed request: an HTTP\/1.1 request needs one Host header\n$/);
      expect(await badRequests()).toBe(before + 1);
    }
  });

  it('an absolute-form target needs no Host, as on the exchange path; HTTP/1.0 needs none either', async () => {
    const r = await rawHead(`GET http://ws/chat HTTP/1.1\r\n${UPGRADE}\r\n`);
    expect(r.status).toBe(101);
    expect(r.headers).toMatchObject({ 'x-backend': 'ws-plain', 'x-seen-host': 'ws' });
    const old = await rawHead(`GET /chat HTTP/1.0\r\n${UPGRADE}\r\n`);
    expect(old.status).not.toBe(400);
  });
});

describe('an Upgrade request\'s x-forwarded-client-cert', () => {
  it('a client\'s own is not passed on (Envoy\'s SANITIZE, as for a plain request)', async () => {
    const r = await rawHead('GET /chat HTTP/1.1\r\nhost: ws\r\nx-forwarded-client-cert: By=spiffe://x;URI=spiffe://cluster.local/ns/default/sa/admin\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
    expect(r.status).toBe(101);
    expect(r.headers['x-seen-xfcc']).toBe('-');
  });
});

describe('Upgrade in an HTTP/1.0 request (RFC 9110 §7.8: a server MUST ignore it)', () => {
  it('is proxied as a plain HTTP/1.0 request: no 101, Upgrade not forwarded, the connection then closes', async () => {
    const raw = await rawExchange(port, 'GET /chat HTTP/1.0\r\nhost: ws\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
    // The upstream answers an Upgrade it sees with 101: a 200 from its request handler means it saw none.
    expect(raw).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(raw.toLowerCase()).toContain('x-backend: ws-plain');
    expect(raw.slice(raw.indexOf('\r\n\r\n') + 4)).toBe(JSON.stringify({ url: '/chat', host: 'ws' }));
    // Asked to keep alive: Node's parser reads nothing past a head that asked for Upgrade, so the connection
    // closes after the answer rather than hang on a request it would never read.
    const two = await rawExchange(
      port,
      'GET /chat HTTP/1.0\r\nhost: ws\r\nupgrade: websocket\r\nconnection: upgrade, keep-alive\r\n\r\n' +
        'GET /chat2 HTTP/1.0\r\nhost: ws\r\n\r\n',
    );
    expect(two).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(two.toLowerCase()).toContain('connection: close');
    expect(two.match(/HTTP\/1\.[01] /g)?.length, two).toBe(1);
    // With a body: read and sent on as the request's (the parser stops only after the message).
    const post = await rawExchange(port, 'POST /chat HTTP/1.0\r\nhost: ws\r\nupgrade: websocket\r\nconnection: upgrade\r\ncontent-length: 5\r\n\r\nhello');
    expect(post).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(post.toLowerCase()).toContain('x-backend: ws-plain');
  });
});

describe('a refused Upgrade is counted and logged as a refused plain request is', () => {
  type Line = Record<string, string | number>;
  /** The access log line of the request to `path` (a unique path each), waiting for the asynchronous write. */
  async function logLine(path: string): Promise<Line> {
    const file = join(logDir, 'access.log');
    for (let i = 0; i < 150; i++) {
      if (existsSync(file)) {
        const lines = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
        const found = lines.find((l) => l.path === path);
        if (found !== undefined) return found;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no access log line for ${path}`);
  }
  async function counters(status: number, reason: string): Promise<{ requests: number; replies: number }> {
    const text = (await request(proxy.adminPort, { path: '/metrics' })).body;
    const requests = new RegExp(`pillion_downstream_requests_total\\{[^}]*response_code="${status}"[^}]*\\} (\\d+)`).exec(text);
    const replies = new RegExp(`pillion_local_replies_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
    return { requests: Number(requests?.[1] ?? 0), replies: Number(replies?.[1] ?? 0) };
  }
  const UPGRADE = 'upgrade: websocket\r\nconnection: upgrade\r\n';
  // The fields a refusal sets; start time, duration and ids differ from request to request.
  const FIELDS = ['protocol', 'method', 'authority', 'status', 'bytes_received', 'bytes_sent', 'upstream_cluster', 'upstream_host', 'attempts', 'response_flags', 'x_pillion_reason', 'downstream_remote'];
  const pick = (l: Line): Line => Object.fromEntries(FIELDS.map((f) => [f, l[f]!]));

  for (const [what, status, reason, head] of [
    ['no route', 404, 'no_route', (path: string) => `GET ${path} HTTP/1.1\r\nhost: nowhere\r\n`],
    ['no Host', 400, 'bad_request', (path: string) => `GET ${path} HTTP/1.1\r\n`],
    ['upstream refused the connection', 503, 'connect_failure', (path: string) => `GET ${path} HTTP/1.1\r\nhost: dead\r\n`],
  ] as const) {
    it(`${what}: ${status} ${reason}, one access log line and the request counters, as without Upgrade`, async () => {
      const id = `${reason}-${Date.now()}`;
      const before = await counters(status, reason);
      const plain = await rawExchange(port, `${head(`/plain-${id}`)}connection: close\r\n\r\n`);
      const upgrade = await rawExchange(port, `${head(`/upgrade-${id}`)}${UPGRADE}\r\n`);
      expect(plain).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
      expect(upgrade).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
      const plainLine = await logLine(`/plain-${id}`);
      const upgradeLine = await logLine(`/upgrade-${id}`);
      expect(pick(upgradeLine)).toEqual(pick(plainLine));
      expect(upgradeLine).toMatchObject({ status, x_pillion_reason: reason });
      const after = await counters(status, reason);
      expect(after).toEqual({ requests: before.requests + 2, replies: before.replies + 2 });
    });
  }

  it('a tunnelled Upgrade gets its line when the tunnel closes: the upstream\'s 101, bytes each way, the endpoint', async () => {
    const path = `/chat-tunnel-${Date.now()}`;
    const before = await counters(101, 'none');
    // The upstream answers 101 and closes: the tunnel carries the client's 5 bytes after the head, then ends.
    const raw = await rawExchange(port, `GET ${path} HTTP/1.1\r\nhost: ws\r\n${UPGRADE}\r\nhello`);
    expect(raw).toMatch(/^HTTP\/1.1 101 /);
    const line = await logLine(path);
    expect(line).toMatchObject({ method: 'GET', status: 101, upstream_cluster: 'ws.default:8080', attempts: 1, bytes_sent: Buffer.byteLength(raw) });
    expect(line.upstream_host).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(line.bytes_received).toBe(5);
    expect(line.x_pillion_reason ?? '-').toBe('-');
    expect((await counters(101, 'none')).requests).toBe(before.requests + 1);
    // The active gauge counted it for its life and is back down (nothing else is in flight here).
    const metrics = (await request(proxy.adminPort, { path: '/metrics' })).body;
    expect(metrics).toMatch(/pillion_downstream_requests_active\{direction="outbound"\} 0/);
  });
});
