// Outlier detection seen from outside: an endpoint that keeps answering 503, or whose port is dead, is ejected
// (shown on /clusters and in the metrics), the rest take every request, and it is back after the ejection time.
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

function answering(name: string, status: number): Promise<Backend> {
  return startHttpBackend(name, (_req, res) => {
    res.writeHead(status, { 'x-backend': name });
    res.end(name);
  });
}

async function clusterOf(service: string): Promise<ClusterStatus> {
  const all = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/clusters`)).json()) as ClusterStatus[];
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
    expect(metrics).toMatch(/pillion_upstream_ejections_total\{cluster="[^"]*flaky[^"]*"\} 1\n/);
    expect(metrics).toMatch(/pillion_upstream_endpoints_ejected\{cluster="[^"]*flaky[^"]*"\} 1\n/);

    const badHits = bad.hits;
    expect(await statuses('flaky', 10)).toEqual(Array(10).fill(200));
    expect(bad.hits).toBe(badHits);

    // Back after 1 s (plus at most one 200 ms interval).
    const until = Date.parse(ejected.ejectedUntil!);
    await new Promise((r) => setTimeout(r, Math.max(0, until - Date.now()) + 350));
    const back = await endpoint('flaky', bad.port);
    expect(back.ejectedUntil).toBeNull();
    expect(back.timesEjected).toBe(1);
    const again = await statuses('flaky', 4);
    expect(again.filter((s) => s === 503).length).toBeGreaterThan(0);
    expect(bad.hits).toBeGreaterThan(badHits);
  });

  it('ejects a dead port by consecutive gateway failures (connect failures)', async () => {
    const first = await statuses('halfdead', 4);
    expect(first.filter((s) => s === 503)).toHaveLength(2);
    const ejected = await endpoint('halfdead', dead);
    expect(ejected.ejectedUntil).not.toBeNull();
    expect(await statuses('halfdead', 6)).toEqual(Array(6).fill(200));
  });
});
