// The cluster bulkheads (Envoy's circuit breakers): requests in flight (max_requests) and the queue of requests
// waiting for an upstream connection (max_pending_requests) are bounded per cluster. Past either, 503 overflow at
// once instead of a queue that grows while the upstream is slow; requests cancelled while queued leave at once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

let backend: Backend;
let fast: Backend;
let proxy: RunningProxy;

beforeAll(async () => {
  backend = await startHttpBackend('slow', (_req, res) => {
    setTimeout(() => res.end('done'), 400);
  });
  fast = await startHttpBackend('fast');
  proxy = await startProxy(
    `services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: slow
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]
    policy:
      circuitBreakers: { maxConnections: 2, maxPendingRequests: 3 }
`,
    { service: 'client' },
  );
});

afterAll(async () => {
  await proxy.close();
  await backend.close();
  await fast.close();
});

describe('pending request queue', () => {
  it('serves what the connections and the queue hold, and answers the rest 503 overflow at once', async () => {
    const started = Date.now();
    const replies = await Promise.all(Array.from({ length: 10 }, () => request(proxy.port('outbound'), { host: 'slow' }).then((r) => ({ ...r, ms: Date.now() - started }))));
    const ok = replies.filter((r) => r.status === 200);
    const overflow = replies.filter((r) => r.status === 503);
    expect(ok).toHaveLength(5);
    expect(overflow).toHaveLength(5);
    for (const r of overflow) {
      expect(r.headers['x-pillion-reason']).toBe('overflow');
      expect(r.ms).toBeLessThan(300);
    }
    const metrics = (await request(proxy.adminPort, { path: '/metrics' })).body;
    expect(metrics).toMatch(/pillion_upstream_pending_overflow_total\{cluster="slow.default:8080"\} 5/);
  });

  it('refuses requests past the cluster bulkhead (maxRequests) at once, and another cluster is not slowed', async () => {
    const bulk = await startProxy(
      `services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: slow
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]
    policy:
      circuitBreakers: { maxRequests: 3 }
  - name: other
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${fast.port} }]
`,
      { service: 'client' },
    );
    try {
      const port = bulk.port('outbound');
      const started = Date.now();
      const slow = Promise.all(Array.from({ length: 8 }, () => request(port, { host: 'slow' }).then((r) => ({ ...r, ms: Date.now() - started }))));
      await new Promise((r) => setTimeout(r, 50));
      // The saturated cluster does not hold up another one on the same proxy.
      const t0 = Date.now();
      expect((await request(port, { host: 'other' })).status).toBe(200);
      expect(Date.now() - t0).toBeLessThan(300);
      const replies = await slow;
      expect(replies.filter((r) => r.status === 200)).toHaveLength(3);
      const overflow = replies.filter((r) => r.status === 503);
      expect(overflow).toHaveLength(5);
      for (const r of overflow) {
        expect(r.headers['x-pillion-reason']).toBe('overflow');
        expect(r.ms).toBeLessThan(300);
      }
      const metrics = (await request(bulk.adminPort, { path: '/metrics' })).body;
      expect(metrics).toMatch(/pillion_upstream_requests_overflow_total\{cluster="slow.default:8080"\} 5/);
      // Places come back as requests finish.
      expect((await request(port, { host: 'slow' })).status).toBe(200);
    } finally {
      await bulk.close();
    }
  });

  it('frees a queued place as soon as its client goes away', async () => {
    const port = proxy.port('outbound');
    // Two requests hold both connections; three more fill the queue, and their clients give up.
    const busy = [request(port, { host: 'slow' }), request(port, { host: 'slow' })];
    await new Promise((r) => setTimeout(r, 50));
    const quitters = Array.from({ length: 3 }, () => {
      const req = http.request({ port, host: '127.0.0.1', headers: { host: 'slow' }, agent: false });
      req.on('error', () => {});
      req.end();
      return req;
    });
    await new Promise((r) => setTimeout(r, 50));
    for (const req of quitters) req.destroy();
    await new Promise((r) => setTimeout(r, 50));
    // Three places are free again: these wait for a connection instead of overflowing.
    const queued = await Promise.all(Array.from({ length: 3 }, () => request(port, { host: 'slow' })));
    expect(queued.map((r) => r.status)).toEqual([200, 200, 200]);
    expect((await Promise.all(busy)).map((r) => r.status)).toEqual([200, 200]);
  });
});
