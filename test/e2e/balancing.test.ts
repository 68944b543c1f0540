// Load balancing seen from outside: least-request avoids a slow endpoint, weighted splits hold their ratio,
// ring-hash keeps a user on one endpoint, and a service without endpoints gets 503 no_healthy_upstream.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

const backends: Backend[] = [];
let proxy: RunningProxy;
let port: number;
let fast: Backend, slow: Backend, v1: Backend, v2: Backend, s1: Backend, s2: Backend, s3: Backend;

function named(name: string, delayMs = 0): Promise<Backend> {
  return startHttpBackend(name, (_req, res) => {
    const reply = (): void => {
      res.writeHead(200, { 'x-backend': name });
      res.end(name);
    };
    if (delayMs > 0) setTimeout(reply, delayMs);
    else reply();
  });
}

beforeAll(async () => {
  fast = await named('fast');
  slow = await named('slow', 60);
  v1 = await named('v1');
  v2 = await named('v2');
  s1 = await named('s1');
  s2 = await named('s2');
  s3 = await named('s3');
  backends.push(fast, slow, v1, v2, s1, s2, s3);
  const ep = (b: Backend) => `{ address: 127.0.0.1, port: ${b.port} }`;
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: mixed
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(fast)}, ${ep(slow)}]
  - name: reviews-v1
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(v1)}]
  - name: reviews-v2
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(v2)}]
  - name: reviews
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(v1)}]
    routes:
      - match: { prefix: /canary, headers: [{ name: x-canary, exact: "yes" }] }
        to: { service: reviews-v2 }
      - match: { prefix: / }
        split: [{ service: reviews-v1, weight: 80 }, { service: reviews-v2, weight: 20 }]
  - name: sticky
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(s1)}, ${ep(s2)}, ${ep(s3)}]
    policy: { loadBalancer: { policy: ring_hash, hashOn: { header: x-user } } }
  - name: empty
    ports: [{ port: 8080, protocol: http }]
    endpoints: []
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await Promise.all(backends.map((b) => b.close()));
});

describe('least_request', () => {
  it('sends clearly fewer requests to a slow endpoint than to a fast one', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const counts: Record<string, number> = { fast: 0, slow: 0 };
    // 16 concurrent workers, 400 requests in all: requests pile up on the slow endpoint, so P2C mostly avoids it.
    let left = 400;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (left-- > 0) {
          const r = await request(port, { host: 'mixed', agent });
          counts[r.body] = (counts[r.body] ?? 0) + 1;
        }
      }),
    );
    agent.destroy();
    expect(counts.fast! + counts.slow!).toBe(400);
    // P2C samples with replacement (as Envoy does): with two endpoints, a quarter of picks see only the slow
    // one, so it keeps ~25-30% of requests; round robin would give it half.
    expect(counts.fast!).toBeGreaterThan(counts.slow! * 1.6);
  });
});

describe('routing rules', () => {
  it('a header match sends canary traffic to v2', async () => {
    for (let i = 0; i < 10; i++) {
      const r = await request(port, { host: 'reviews', path: '/canary/x', headers: { 'x-canary': 'yes' } });
      expect(r.body).toBe('v2');
    }
    const r = await request(port, { host: 'reviews', path: '/canary/x', headers: { 'x-canary': 'no' } });
    expect(['v1', 'v2']).toContain(r.body);
  });

  it('a weighted split holds its 80/20 ratio within tolerance', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const counts: Record<string, number> = { v1: 0, v2: 0 };
    const total = 1000;
    let left = total;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (left-- > 0) {
          const r = await request(port, { host: 'reviews', path: '/list', agent });
          counts[r.body]!++;
        }
      }),
    );
    agent.destroy();
    // Binomial(1000, 0.2): sd ≈ 12.6; ±60 is over 4.5 sd, so this fails only when the split is wrong.
    expect(counts.v2!).toBeGreaterThan(140);
    expect(counts.v2!).toBeLessThan(260);
  });
});

describe('ring_hash', () => {
  it('keeps each user on one endpoint and spreads users across endpoints', async () => {
    const seen = new Map<string, Set<string>>();
    for (let u = 0; u < 30; u++) {
      for (let i = 0; i < 5; i++) {
        const r = await request(port, { host: 'sticky', headers: { 'x-user': `user-${u}` } });
        const set = seen.get(`user-${u}`) ?? new Set();
        set.add(r.body);
        seen.set(`user-${u}`, set);
      }
    }
    for (const endpoints of seen.values()) expect(endpoints.size).toBe(1);
    const used = new Set([...seen.values()].map((s) => [...s][0]));
    expect(used.size).toBeGreaterThanOrEqual(2);
  });
});

describe('no endpoints', () => {
  it('answers 503 no_healthy_upstream', async () => {
    const r = await request(port, { host: 'empty' });
    expect(r.status).toBe(503);
    expect(r.headers['x-pillion-reason']).toBe('no_healthy_upstream');
  });
});
