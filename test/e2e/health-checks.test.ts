// Active health checks seen from outside (issue 15): an endpoint whose health path starts failing is marked
// unhealthy on /clusters and gets no traffic, and is back after healthy_threshold passing probes; a TCP check
// takes out an endpoint whose port closed; probes are not requests in the stats; and health endpoints that answer
// an endless body, never answer, or answer garbage neither crash nor stall the proxy.
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';
import type { ClusterStatus, EndpointStatus } from '../../src/admin/types.js';
import { formatClusters } from '../../src/cli/ctl.js';

const backends: Backend[] = [];
const rawServers: net.Server[] = [];
let proxy: RunningProxy;
let port: number;

/** An HTTP backend whose /healthz answers `health.status`; every other path answers 200 with its name. */
interface Checked {
  backend: Backend;
  health: { status: number; hits: number };
  /** Requests that were not health probes. */
  served: number;
}

async function checked(name: string): Promise<Checked> {
  const c: Checked = { backend: undefined as unknown as Backend, health: { status: 200, hits: 0 }, served: 0 };
  c.backend = await startHttpBackend(name, (req, res) => {
    if (req.url === '/healthz') {
      c.health.hits++;
      res.writeHead(c.health.status, { 'content-type': 'text/plain' });
      res.end('health');
      return;
    }
    c.served++;
    res.writeHead(200, { 'x-backend': name });
    res.end(name);
  });
  backends.push(c.backend);
  return c;
}

/** A raw server: `onHead` runs once a request head arrived; counts connections open now and ever. */
async function rawServer(onHead: (socket: net.Socket, head: string) => void): Promise<{ port: number; open: () => number; total: () => number }> {
  let open = 0;
  let total = 0;
  const server = net.createServer((socket) => {
    open++;
    total++;
    socket.on('error', () => {});
    socket.on('close', () => open--);
    let head = '';
    socket.on('data', (d: Buffer) => {
      if (head.includes('\r\n\r\n')) return;
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) onHead(socket, head);
    });
  });
  rawServers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as AddressInfo).port, open: () => open, total: () => total };
}

let good: Checked, flappy: Checked, tcpA: Checked, tcpB: Checked, steady: Checked;
let endless: Awaited<ReturnType<typeof rawServer>>, silent: Awaited<ReturnType<typeof rawServer>>, garbage: Awaited<ReturnType<typeof rawServer>>;

async function clusterOf(service: string): Promise<ClusterStatus> {
  const all = (await (await fetch(`http://127.0.0.1:${proxy.adminPort}/clusters?format=pillion`)).json()) as ClusterStatus[];
  const found = all.find((c) => c.name.startsWith(`${service}.`));
  if (found === undefined) throw new Error(`no cluster for ${service}`);
  return found;
}

async function endpoint(service: string, p: number): Promise<EndpointStatus> {
  return (await clusterOf(service)).endpoints.find((e) => e.port === p)!;
}

/** Polls /clusters until the endpoint's health check shows `want` (bounded: 5 s). */
async function waitFor(service: string, p: number, want: EndpointStatus['healthCheck']): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const e = await endpoint(service, p);
    if (e.healthCheck === want) return;
    if (Date.now() > deadline) throw new Error(`${service} endpoint :${p} is ${e.healthCheck}, expected ${want}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
}

async function statuses(host: string, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push((await request(port, { host })).status);
  return out;
}

beforeAll(async () => {
  good = await checked('good');
  flappy = await checked('flappy');
  tcpA = await checked('tcp-a');
  tcpB = await checked('tcp-b');
  steady = await checked('steady');
  // Answers the probe's status line, then a body that never ends; other requests get a plain answer.
  endless = await rawServer((socket, head) => {
    if (!head.startsWith('GET /healthz ')) {
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nendless');
      return;
    }
    socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n');
    const chunk = Buffer.alloc(16 * 1024, 'x');
    const pump = (): void => {
      while (!socket.destroyed && socket.write(chunk));
      if (!socket.destroyed) socket.once('drain', pump);
    };
    pump();
  });
  silent = await rawServer(() => {});
  garbage = await rawServer((socket) => socket.write(Buffer.alloc(64 * 1024, 'z')));
  const ep = (p: number) => `{ address: 127.0.0.1, port: ${p} }`;
  const hc = (extra: string) => `{ interval: 100ms, timeout: 300ms, unhealthyThreshold: 2, healthyThreshold: 2${extra} }`;
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(good.backend.port)}, ${ep(flappy.backend.port)}]
    policy: { loadBalancer: { policy: round_robin }, healthCheck: ${hc(', path: /healthz')} }
  - name: tcp
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(tcpA.backend.port)}, ${ep(tcpB.backend.port)}]
    policy: { loadBalancer: { policy: round_robin }, healthCheck: ${hc('')} }
  - name: hostile
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(steady.backend.port)}, ${ep(endless.port)}, ${ep(silent.port)}, ${ep(garbage.port)}]
    policy: { loadBalancer: { policy: round_robin }, healthCheck: ${hc(', path: /healthz')} }
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await Promise.all(backends.map((b) => b.close()));
  await Promise.all(rawServers.map((s) => new Promise<void>((r) => s.close(() => r()))));
});

describe('active health checks', () => {
  it('takes an endpoint whose health path fails out of the balancer, and lets it back after healthyThreshold passes', async () => {
    await waitFor('web', good.backend.port, 'healthy');
    await waitFor('web', flappy.backend.port, 'healthy');
    expect((await clusterOf('client')).endpoints[0]!.healthCheck).toBeNull();

    flappy.health.status = 500;
    await waitFor('web', flappy.backend.port, 'unhealthy');
    const m = await metrics();
    expect(m).toMatch(/pillion_upstream_endpoints_unhealthy\{cluster="web\.default:8080"\} 1\n/);
    expect(m).toMatch(/pillion_upstream_health_checks_total\{cluster="web\.default:8080",result="failure"\} [1-9]/);
    expect(formatClusters([await clusterOf('web')])).toMatch(new RegExp(`127\\.0\\.0\\.1:${flappy.backend.port}\\s+1\\s+failed_active_hc\\s`));
    const served = flappy.served;
    expect(await statuses('web', 10)).toEqual(Array(10).fill(200));
    expect(flappy.served).toBe(served);

    flappy.health.status = 200;
    const hitsAtFlip = flappy.health.hits;
    await waitFor('web', flappy.backend.port, 'healthy');
    // healthyThreshold 2: at least two passing probes after the flip (one may have been in flight across it).
    expect(flappy.health.hits - hitsAtFlip).toBeGreaterThanOrEqual(2);
    await statuses('web', 4);
    expect(flappy.served).toBeGreaterThan(served);
    expect(await metrics()).toMatch(/pillion_upstream_endpoints_unhealthy\{cluster="web\.default:8080"\} 0\n/);

    // Probes are not requests: /clusters counts only the proxied ones (14 sent to web).
    const c = await clusterOf('web');
    expect(c.endpoints.reduce((n, e) => n + e.totalRequests, 0)).toBe(14);
  });

  it('a TCP check fails an endpoint whose port closed, after unhealthyThreshold failed connects', async () => {
    await waitFor('tcp', tcpA.backend.port, 'healthy');
    await waitFor('tcp', tcpB.backend.port, 'healthy');
    expect(tcpA.health.hits + tcpB.health.hits).toBe(0);
    await tcpB.backend.close();
    await waitFor('tcp', tcpB.backend.port, 'unhealthy');
    // No request meets the closed port: the balancer no longer offers it.
    expect(await statuses('tcp', 6)).toEqual(Array(6).fill(200));
    expect(tcpA.served).toBe(6);
  });

  it('survives health endpoints that answer an endless body, never answer, or answer garbage', async () => {
    await waitFor('hostile', steady.backend.port, 'healthy');
    // The status line decides: an endless body after 200 is healthy, and each probe's connection is closed.
    await waitFor('hostile', endless.port, 'healthy');
    await waitFor('hostile', silent.port, 'unhealthy');
    await waitFor('hostile', garbage.port, 'unhealthy');
    const rss = process.memoryUsage().rss;
    const probesBefore = endless.total();
    // About ten more probes of each (100 ms apart).
    await new Promise((r) => setTimeout(r, 1_000));
    expect(endless.total()).toBeGreaterThan(probesBefore + 3);
    // No probe connection piles up: at most the one in flight (and one closing) per server.
    expect(endless.open()).toBeLessThanOrEqual(2);
    expect(silent.open()).toBeLessThanOrEqual(2);
    expect(garbage.open()).toBeLessThanOrEqual(2);
    // Generous: an endless body read into memory would add tens of MiB a second here.
    expect(process.memoryUsage().rss - rss).toBeLessThan(32 * 1024 * 1024);
    const c = await clusterOf('hostile');
    expect(c.endpoints.map((e) => e.healthCheck)).toEqual(['healthy', 'healthy', 'unhealthy', 'unhealthy']);
    // Traffic goes to the two passing endpoints only: the silent one would hang a request, the garbage one fail it.
    const replies: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await request(port, { host: 'hostile' });
      replies.push(`${r.status} ${r.body}`);
    }
    expect(new Set(replies)).toEqual(new Set(['200 steady', '200 endless']));
  });
});
