// What must not leak or hang: client aborts reach the upstream, keep-alive is reused, Upgrade passes through,
// 100-continue works, and after close no socket or timer of the proxy is left behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as net from 'node:net';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

let hanging: Backend;
let hangingClosed = 0;
let plain: Backend;
let ws: net.Server;
let wsPort = 0;
let proxy: RunningProxy;
let port: number;

beforeAll(async () => {
  hanging = await startHttpBackend('hanging', (req) => {
    // Never answers; counts the proxy cancelling the request.
    req.socket.on('close', () => hangingClosed++);
  });
  plain = await startHttpBackend('plain');
  ws = net.createServer((socket) => {
    // A minimal WebSocket-ish upgrade server: answers 101, then echoes upper-cased bytes.
    socket.once('data', (head) => {
      const text = head.toString();
      if (!/^GET \/ws HTTP\/1.1/.test(text) || !/upgrade: websocket/i.test(text)) {
        socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n');
      socket.on('data', (d) => socket.write(d.toString().toUpperCase()));
    });
  });
  await new Promise<void>((r) => ws.listen(0, '127.0.0.1', () => r()));
  wsPort = (ws.address() as net.AddressInfo).port;
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: hanging
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${hanging.port} }]
    policy: { timeout: 30s }
  - name: plain
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${plain.port} }]
  - name: ws
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${wsPort} }]
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await hanging.close();
  await plain.close();
  await new Promise<void>((r) => ws.close(() => r()));
});

describe('client disconnect', () => {
  it('cancels the upstream request and releases the endpoint', async () => {
    const before = hangingClosed;
    const req = http.request({ host: '127.0.0.1', port, path: '/', headers: { host: 'hanging' }, agent: false });
    req.on('error', () => {});
    req.end();
    await waitFor(() => activeRequests('hanging.default:8080') === 1);
    req.destroy();
    await waitFor(() => hangingClosed > before);
    await waitFor(() => activeRequests('hanging.default:8080') === 0);
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    // Recorded as 499 (nginx's "client closed request"), flag DC in the access log.
    expect(metrics).toMatch(/pillion_downstream_requests_total\{direction="outbound",code_class="4xx",response_code="499"\} 1/);
  });
});

describe('connection reuse', () => {
  it('keeps upstream connections alive across requests', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    for (let i = 0; i < 20; i++) {
      const r = await request(port, { host: 'plain', agent });
      expect(r.status).toBe(200);
    }
    agent.destroy();
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    const line = metrics.split('\n').find((l) => l.startsWith('pillion_upstream_connections_active{cluster="plain.default:8080"}'));
    expect(line).toBeDefined();
    expect(Number(line!.split(' ')[1])).toBe(1);
  });
});

describe('Expect: 100-continue', () => {
  it('answers 100 Continue and forwards the body', async () => {
    const result = await new Promise<{ continued: boolean; body: string }>((resolve, reject) => {
      let continued = false;
      const req = http.request({
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/upload',
        agent: false,
        headers: { host: 'plain', expect: '100-continue', 'content-length': '5' },
      });
      req.on('continue', () => {
        continued = true;
        req.end('hello');
      });
      req.on('response', (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ continued, body }));
      });
      req.on('error', reject);
    });
    expect(result.continued).toBe(true);
    expect(JSON.parse(result.body).body).toBe('hello');
  });
});

describe('Upgrade', () => {
  it('passes a WebSocket upgrade through and splices the streams', async () => {
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () =>
        socket.write('GET /ws HTTP/1.1\r\nhost: ws\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\r\n'),
      );
      let out = '';
      socket.on('data', (d) => {
        out += d.toString();
        if (out.includes('\r\n\r\n') && !out.includes('PING')) socket.write('ping');
        if (out.includes('PING')) {
          socket.destroy();
          resolve(out);
        }
      });
      socket.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1.1 101 /);
    expect(reply).toContain('PING');
  });
});

describe('teardown', () => {
  it('leaves no socket or timer behind once the proxy is closed', async () => {
    const extra = await startProxy(
      `
services:
  - name: a
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${plain.port} }]
`,
      { service: 'a' },
    );
    const baseline = resourceCounts();
    for (let i = 0; i < 5; i++) expect((await request(extra.port('outbound'), { host: 'a' })).status).toBe(200);
    await extra.close();
    await new Promise((r) => setTimeout(r, 100));
    const after = resourceCounts();
    expect(after.TCPSocketWrap ?? 0).toBeLessThanOrEqual(baseline.TCPSocketWrap ?? 0);
    expect(after.TCPServerWrap ?? 0).toBeLessThan(baseline.TCPServerWrap ?? 0);
    expect(after.Timeout ?? 0).toBeLessThanOrEqual(baseline.Timeout ?? 0);
  });
});

function resourceCounts(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

function activeRequests(cluster: string): number {
  const c = proxy.proxy.clusters().find((x) => x.name === cluster);
  return c?.endpoints.reduce((n, e) => n + e.activeRequests, 0) ?? -1;
}

async function waitFor(cond: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
