// `pillion ctl` against a running proxy's admin server: what an operator reads.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';
import { MAIN } from '../helpers/process.js';

let backend: Backend;
let bad: Backend;
let proxy: RunningProxy;

function ctl(...args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, 'ctl', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => resolve({ code, out, err }));
  });
}

beforeAll(async () => {
  backend = await startHttpBackend('backend');
  bad = await startHttpBackend('bad', (_req, res) => {
    res.writeHead(503);
    res.end();
  });
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]
    routes:
      - match: { prefix: /beta, headers: [{ name: x-beta, present: true }] }
        split: [{ service: backend, weight: 3 }, { service: client, weight: 1 }]
  - name: flaky
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }, { address: 127.0.0.1, port: ${bad.port} }]
    policy: { loadBalancer: { policy: round_robin }, outlierDetection: { consecutive5xx: 2, interval: 10s, baseEjectionTime: 60s, maxEjectionPercent: 50 } }
`,
    { service: 'client' },
  );
  expect((await request(proxy.port('outbound'), { host: 'backend' })).status).toBe(200);
  // Round robin over two: the 503 endpoint has its two in a row within four requests, and is ejected.
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push((await request(proxy.port('outbound'), { host: 'flaky' })).status);
  expect(statuses.sort()).toEqual([200, 200, 503, 503]);
});

afterAll(async () => {
  await proxy.close();
  await backend.close();
  await bad.close();
});

describe('pillion ctl', () => {
  const admin = (): string => `127.0.0.1:${proxy.adminPort}`;

  it('clusters: one row per endpoint with its counters, success rate and ejection', async () => {
    const { code, out } = await ctl('clusters', '--admin', admin());
    expect(code).toBe(0);
    expect(out.split('\n')[0]).toMatch(/^CLUSTER\s+LB\s+PROTOCOL\s+ENDPOINT\s+WEIGHT\s+HEALTH\s+ACTIVE\s+TOTAL\s+FAILED\s+SUCCESS\s+EJECTED UNTIL$/);
    expect(out).toMatch(new RegExp(`backend\\.default:8080\\s+least_request\\s+http1\\s+127\\.0\\.0\\.1:${backend.port}\\s+1\\s+healthy\\s+0\\s+1\\s+0\\s+100\\.0%\\s+-\\n`));
    expect(out).toMatch(/client\.default:8080\s+least_request\s+http1\s+127\.0\.0\.1:1\s+1\s+healthy\s+0\s+0\s+0\s+-\s+-\n/);
    // The flaky service: its good endpoint at 100 %, the 503 one at 0 % and ejected for a minute (x1).
    expect(out).toMatch(new RegExp(`flaky\\.default:8080\\s+round_robin\\s+http1\\s+127\\.0\\.0\\.1:${backend.port}\\s+1\\s+healthy\\s+0\\s+2\\s+0\\s+100\\.0%\\s+-\\n`));
    expect(out).toMatch(
      new RegExp(`flaky\\.default:8080\\s+round_robin\\s+http1\\s+127\\.0\\.0\\.1:${bad.port}\\s+1\\s+failed_outlier_check\\s+0\\s+2\\s+2\\s+0\\.0%\\s+\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z \\(in (59|60)s, x1\\) consecutive_5xx\\n`),
    );
  });

  it('routes: matches, weighted targets and timeouts', async () => {
    const { out } = await ctl('routes', '--admin', admin());
    expect(out).toMatch(/\/beta \[x-beta\]\s+backend\.default:8080\(3\) client\.default:8080\(1\)\s+15000ms/);
  });

  it('listeners and stats', async () => {
    expect((await ctl('listeners', '--admin', admin())).out).toMatch(new RegExp(`outbound\\s+127\\.0\\.0\\.1:${proxy.port('outbound')}\\s+outbound`));
    expect((await ctl('stats', '--admin', admin())).out).toMatch(/pillion_downstream_requests_total\{direction="outbound",code_class="2xx",response_code="200"\} 3/);
  });

  it('says which admin server it cannot reach', async () => {
    const { code, err } = await ctl('clusters', '--admin', '127.0.0.1:9');
    expect(code).toBe(1);
    expect(err).toContain("cannot reach the proxy's admin server at 127.0.0.1:9");
  });

  it('gives up on an admin server that accepts but never answers', async () => {
    // Reads (so it sees the client leave) and never writes.
    const silent = createServer((socket) => socket.on('error', () => {}).resume());
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    try {
      const { port } = silent.address() as AddressInfo;
      const started = Date.now();
      const { code, err } = await ctl('clusters', '--admin', `127.0.0.1:${port}`);
      expect(code).toBe(1);
      expect(err).toContain(`the proxy's admin server at 127.0.0.1:${port} did not answer /clusters?format=pillion within 5 s`);
      expect(Date.now() - started).toBeLessThan(9_000);
    } finally {
      await new Promise<void>((r) => silent.close(() => r()));
    }
  }, 15_000);
});
