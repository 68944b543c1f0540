// The HTTP filters before the router, seen from outside: fault injection (abort, delay, per route and per service)
// on the outbound side, and the service's local rate limit on its inbound side.
import * as http from 'node:http';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

let backend: Backend;
let outbound: RunningProxy;
let inbound: RunningProxy;
let port: number;

const MESH = (backendPort: number) => `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: broken
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backendPort} }]
    policy: { fault: { abort: { status: 503, percent: 100 } } }
  - name: flaky
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backendPort} }]
    policy: { fault: { abort: { status: 500, percent: 50 } } }
    routes:
      - match: { prefix: /slow }
        to: { service: flaky }
        fault: { delay: { fixed: 200ms, percent: 100 } }
  - name: limited
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backendPort} }]
    policy: { rateLimit: { requests: 5, per: 1h } }
`;

beforeAll(async () => {
  backend = await startHttpBackend('b');
  outbound = await startProxy(MESH(backend.port), { service: 'client' });
  port = outbound.port('outbound');
  inbound = await startProxy(MESH(backend.port), { service: 'limited', appPort: backend.port });
});

afterAll(async () => {
  await outbound.close();
  await inbound.close();
  await backend.close();
});

describe('fault injection (envoy.filters.http.fault)', () => {
  it('aborts every request to a service with its configured status, before any reaches the upstream', async () => {
    const before = backend.hits;
    for (let i = 0; i < 5; i++) {
      const r = await request(port, { host: 'broken' });
      expect(r.status).toBe(503);
      expect(r.headers['x-pillion-reason']).toBe('fault_abort');
    }
    expect(backend.hits).toBe(before);
  });

  it('aborts about the configured percent of requests and passes the rest', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 200; i++) statuses.push((await request(port, { host: 'flaky' })).status);
    const aborted = statuses.filter((s) => s === 500).length;
    expect(aborted + statuses.filter((s) => s === 200).length).toBe(200);
    // 50 % of 200: the standard deviation is about 7, so 60..140 fails only by a broken filter.
    expect(aborted).toBeGreaterThan(60);
    expect(aborted).toBeLessThan(140);
  });

  it("delays a route's requests by its own fault config (which replaces the service's abort)", async () => {
    for (let i = 0; i < 3; i++) {
      const start = performance.now();
      const r = await request(port, { host: 'flaky', path: '/slow' });
      expect(r.status).toBe(200);
      expect(performance.now() - start).toBeGreaterThanOrEqual(190);
    }
  });

  it('survives a client that goes away during the delay', async () => {
    await new Promise<void>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/slow', headers: { host: 'flaky' }, agent: false });
      req.on('error', () => resolve());
      req.end();
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 50);
    });
    await new Promise((r) => setTimeout(r, 250));
    expect((await request(port, { host: 'flaky', path: '/slow' })).status).toBe(200);
  });

  it('an Upgrade whose client goes away during the delay: counted 499 and no longer active', async () => {
    const metrics = async (): Promise<string> => (await fetch(`http://127.0.0.1:${outbound.adminPort}/metrics`)).text();
    const before = Number(/pillion_downstream_requests_total\{direction="outbound"[^}]*response_code="499"[^}]*\} (\d+)/.exec(await metrics())?.[1] ?? 0);
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write('GET /slow HTTP/1.1\r\nhost: flaky\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
    await new Promise((r) => setTimeout(r, 50));
    expect(await metrics()).toMatch(/pillion_downstream_requests_active\{direction="outbound"\} 1\n/);
    socket.destroy();
    let text = '';
    for (let i = 0; i < 50; i++) {
      text = await metrics();
      if (/pillion_downstream_requests_active\{direction="outbound"\} 0\n/.test(text)) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(text).toMatch(/pillion_downstream_requests_active\{direction="outbound"\} 0\n/);
    expect(Number(/pillion_downstream_requests_total\{direction="outbound"[^}]*response_code="499"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0)).toBe(before + 1);
  });
});

describe('local rate limit (envoy.filters.http.local_ratelimit)', () => {
  it("answers 429 rate_limited once the service's bucket is empty", async () => {
    const inboundPort = inbound.port('inbound');
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await request(inboundPort, { host: 'limited' });
      statuses.push(r.status);
      if (r.status === 429) expect(r.headers['x-pillion-reason']).toBe('rate_limited');
    }
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429, 429]);
    const metrics = await (await fetch(`http://127.0.0.1:${inbound.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/pillion_local_replies_total\{reason="rate_limited"\} 3\n/);
  });
});
