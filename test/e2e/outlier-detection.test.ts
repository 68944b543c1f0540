// Outlier detection seen from outside: an endpoint that keeps answering 503, or whose port is dead, is ejected
// (shown on /clusters and in the metrics), the rest take every request, and it is back after the ejection time;
// under least_request a dead port (which fails fast, so it always looks least loaded) gets no further connect
// attempts once ejected; and the success-rate detector ejects an endpoint failing half its requests, never five
// in a row, which the consecutive counters cannot see.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadPort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';
import type { ClusterStatus, EndpointStatus } from '../../src/admin/types.js';

const backends: Backend[] = [];
let proxy: RunningProxy;
let port: number;
let good: Backend, bad: Backend, good2: Backend;
let dead: number;
let lrDead: number;
const lrGood: Backend[] = [];
const srGood: Backend[] = [];
let srHalf: Backend;

function answering(name: string, status: number): Promise<Backend> {
  return startHttpBackend(name, (_req, res) => {
    res.writeHead(status, { 'x-backend': name });
    res.end(name);
  });
}

async function clusterOf(service: string): Promise<ClusterStatus> {
  const all = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/clusters?format=pillion`)).json()) as ClusterStatus[];
  const found = all.find((c) => c.name.includes(service));
  if (found === undefined) throw new Error(`no cluster for ${service}: ${all.map((c) => c.name).join(', ')}`);
  return found;
}

async function endpoint(service: string, p: number): Promise<EndpointStatus> {
  return (await clusterOf(service)).endpoints.find((e) => e.port === p)!;
}

beforeAll(async () => {
  good = await answering('good', 200);
  bad = await answering('bad', 503);
  good2 = await answering('good2', 200);
  backends.push(good, bad, good2);
  dead = await deadPort();
  lrDead = await deadPort();
  for (let i = 0; i < 2; i++) lrGood.push(await answering(`lr${i}`, 200));
  for (let i = 0; i < 4; i++) srGood.push(await answering(`sr${i}`, 200));
  // Every other request a 503: a 50 % success rate, and never two failures in a row.
  let n = 0;
  srHalf = await startHttpBackend('half', (_req, res) => {
    res.writeHead(n++ % 2 === 0 ? 503 : 200);
    res.end('half');
  });
  backends.push(...lrGood, ...srGood, srHalf);
  const ep = (p: number) => `{ address: 127.0.0.1, port: ${p} }`;
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: flaky
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(good.port)}, ${ep(bad.port)}]
    policy: { loadBalancer: { policy: round_robin }, outlierDetection: { consecutive5xx: 3, interval: 200ms, baseEjectionTime: 1s, maxEjectionPercent: 50 } }
  - name: halfdead
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(good2.port)}, ${ep(dead)}]
    policy: { loadBalancer: { policy: round_robin }, outlierDetection: { consecutive5xx: 100, consecutiveGatewayFailure: 2, interval: 200ms, baseEjectionTime: 1s, maxEjectionPercent: 50 } }
  - name: leastreq
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${lrGood.map((b) => ep(b.port)).join(', ')}, ${ep(lrDead)}]
    policy: { loadBalancer: { policy: least_request }, outlierDetection: { consecutive5xx: 100, consecutiveGatewayFailure: 3, interval: 200ms, baseEjectionTime: 30s, maxEjectionPercent: 50 } }
  - name: rated
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${[...srGood, srHalf].map((b) => ep(b.port)).join(', ')}]
    policy:
      loadBalancer: { policy: round_robin }
      outlierDetection: { interval: 300ms, baseEjectionTime: 30s, maxEjectionPercent: 20, successRate: { minimumHosts: 5, requestVolume: 10 } }
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await Promise.all(backends.map((b) => b.close()));
});

async function statuses(host: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await request(port, { host })).status);
  return out;
}

describe('outlier detection', () => {
  it('ejects an endpoint after consecutive 503s, sends everything to the healthy one, and lets it back after the ejection time', async () => {
    // Round robin over two: the 503 endpoint has three in a row within six requests (successes elsewhere do not reset it).
    const first = await statuses('flaky', 6);
    expect(first.filter((s) => s === 503)).toHaveLength(3);
    const ejected = await endpoint('flaky', bad.port);
    expect(ejected.ejectedUntil).not.toBeNull();
    expect(ejected.timesEjected).toBe(1);
    expect((await endpoint('flaky', good.port)).ejectedUntil).toBeNull();
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/pillion_upstream_ejections_total\{cluster="[^"]*flaky[^"]*",reason="consecutive_5xx"\} 1\n/);
    expect(ejected.ejectionReason).toBe('consecutive_5xx');
    expect(metrics).toMatch(/pillion_upstream_endpoints_ejected\{cluster="[^"]*flaky[^"]*"\} 1\n/);

    const badHits = bad.hits;
    expect(await statuses('flaky', 10)).toEqual(Array(10).fill(200));
    expect(bad.hits).toBe(badHits);

    // Back after 1 s (plus at most one 200 ms interval). Watched every 20 ms, so it is seen before the next tick
    // could decay the multiplier (which depended on when the first request came relative to the timer).
    const until = Date.parse(ejected.ejectedUntil!);
    await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now())));
    let back = await endpoint('flaky', bad.port);
    while (back.ejectedUntil !== null && Date.now() < until + 1_000) {
      await new Promise((r) => setTimeout(r, 20));
      back = await endpoint('flaky', bad.port);
    }
    expect(back.ejectedUntil).toBeNull();
    expect(back.timesEjected).toBe(1);
    expect(back.ejectionReason).toBeNull();
    const again = await statuses('flaky', 4);
    expect(again.filter((s) => s === 503).length).toBeGreaterThan(0);
    expect(bad.hits).toBeGreaterThan(badHits);
  });

  it('ejects a dead port by consecutive gateway failures (connect failures)', async () => {
    const first = await statuses('halfdead', 4);
    expect(first.filter((s) => s === 503)).toHaveLength(2);
    const ejected = await endpoint('halfdead', dead);
    expect(ejected.ejectedUntil).not.toBeNull();
    expect(ejected.ejectionReason).toBe('consecutive_gateway_failure');
    expect(await statuses('halfdead', 6)).toEqual(Array(6).fill(200));
  });

  it('under least_request with concurrent load, makes no further connect attempt to an ejected dead port', async () => {
    const connectFailures = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
      const m = /pillion_upstream_connect_failures_total\{cluster="[^"]*leastreq[^"]*"\} (\d+)/.exec(text);
      return m === null ? 0 : Number(m[1]);
    };
    // Eight clients in a loop until the dead endpoint is ejected (bounded: 10 s).
    const deadline = Date.now() + 10_000;
    let ejectedNow = false;
    const client = async (): Promise<void> => {
      while (!ejectedNow && Date.now() < deadline) await request(port, { host: 'leastreq' });
    };
    const watcher = async (): Promise<void> => {
      while (!ejectedNow && Date.now() < deadline) {
        ejectedNow = (await endpoint('leastreq', lrDead)).ejectedUntil !== null;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    await Promise.all([watcher(), ...Array.from({ length: 8 }, client)]);
    const before = await endpoint('leastreq', lrDead);
    expect(before.ejectedUntil).not.toBeNull();
    expect(before.ejectionReason).toBe('consecutive_gateway_failure');
    const failuresBefore = await connectFailures();
    expect(failuresBefore).toBeGreaterThanOrEqual(3);
    const goodHits = lrGood.reduce((sum, b) => sum + b.hits, 0);

    // 200 more requests, 10 at a time: all answered by the live endpoints, none tried on the dead port.
    const statusesAfter: number[] = [];
    for (let round = 0; round < 20; round++) {
      const replies = await Promise.all(Array.from({ length: 10 }, () => request(port, { host: 'leastreq' })));
      statusesAfter.push(...replies.map((r) => r.status));
    }
    expect(statusesAfter).toEqual(Array(200).fill(200));
    expect(lrGood.reduce((sum, b) => sum + b.hits, 0) - goodHits).toBe(200);
    const after = await endpoint('leastreq', lrDead);
    expect(after.ejectedUntil).toBe(before.ejectedUntil);
    expect(after.totalRequests).toBe(before.totalRequests);
    expect(await connectFailures()).toBe(failuresBefore);
  });

  it('ejects an endpoint failing every other request by success rate within a few intervals, and says so', async () => {
    const deadline = Date.now() + 10_000;
    let half = await endpoint('rated', srHalf.port);
    // Four clients keep traffic above requestVolume (10 per endpoint per 300 ms interval) until the ejection.
    const client = async (): Promise<void> => {
      while (half.ejectedUntil === null && Date.now() < deadline) await request(port, { host: 'rated' });
    };
    const watcher = async (): Promise<void> => {
      while (half.ejectedUntil === null && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        half = await endpoint('rated', srHalf.port);
      }
    };
    await Promise.all([watcher(), ...Array.from({ length: 4 }, client)]);
    expect(half.ejectedUntil).not.toBeNull();
    expect(half.ejectionReason).toBe('success_rate');
    // Its failures never ran five deep, so no consecutive counter could have done it.
    expect(half.failedRequests).toBeGreaterThanOrEqual(5);
    const others = (await clusterOf('rated')).endpoints.filter((e) => e.port !== srHalf.port);
    expect(others.every((e) => e.ejectedUntil === null)).toBe(true);
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    expect(metrics).toMatch(/pillion_upstream_ejections_total\{cluster="[^"]*rated[^"]*",reason="success_rate"\} 1\n/);
    // The next interval's success rate of a healthy endpoint: 100 % (or null if an interval passed without traffic).
    const rate = (await clusterOf('rated')).endpoints.find((e) => e.port === srGood[0]!.port)!.successRate;
    expect(rate === null || rate === 100).toBe(true);
    const hits = srHalf.hits;
    expect(await statuses('rated', 8)).toEqual(Array(8).fill(200));
    expect(srHalf.hits).toBe(hits);
  });
});
