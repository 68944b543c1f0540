// `pillion proxy --status-port` as a real process with an identity and STRICT inbound mTLS: the kubelet's plaintext
// probe of the app is refused on the inbound port, while the same probe through the status port (PILLION_APP_PROBES)
// reaches the app and answers with the app's status; /healthz/ready follows the admin server's /ready.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { PROTO_DIR } from '../../src/config/protos.js';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect, createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { request as rawRequest } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deadPort, freePort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { request, type Reply } from '../helpers/client.js';
import { runPillion, type PillionProcess } from '../helpers/process.js';
import { TestCa } from '../tls/test-ca.js';

const TD = 'spiffe://cluster.local/ns/default/sa';
let ca: TestCa;
let app: Backend;
let tlsApp: HttpsServer;
/** A gRPC app with the standard health service: '' and 'ready' SERVING, 'draining' NOT_SERVING, others unknown. */
let grpcApp: grpc.Server;
let grpcPort: number;
/** Accepts TCP and never speaks HTTP/2 (a hung app); counts the connections still open. */
let hungApp: NetServer;
const hungConnections = new Set<Socket>();
let dir: string;
let meshFile: string;
let inbound: number;
let proxy: PillionProcess;
let statusPort: number;
let adminPort: number;
const procs: PillionProcess[] = [];

function start(extra: string[], env: Record<string, string>): PillionProcess {
  const c = ca.issue({ spiffeId: `${TD}/web`, cn: 'web' });
  const p = runPillion(
    ['proxy', '--config', meshFile, '--service', 'web', '--admin-port', '0', '--outbound-port', '0', '--access-log', 'off',
      '--cert', c.certFile, '--key', c.keyFile, '--ca', ca.caFile, ...extra],
    undefined,
    [],
    env,
  );
  procs.push(p);
  return p;
}

const probe = (path: string, method = 'GET'): Promise<Reply> => request(statusPort, { path, method });

beforeAll(async () => {
  ca = new TestCa();
  app = await startHttpBackend('app', (req, res) => {
    if (req.url === '/fail') {
      res.writeHead(500).end('broken');
      return;
    }
    if (req.url === '/slow') {
      const t = setTimeout(() => res.writeHead(200).end('slow'), 1500);
      res.on('close', () => clearTimeout(t));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
  const appCert = ca.issue({ cn: 'localhost' });
  tlsApp = createHttpsServer({ cert: appCert.certPem, key: appCert.keyPem }, (_req, res) => res.end('tls ok'));
  tlsApp.on('error', () => {});
  await new Promise<void>((r) => tlsApp.listen(0, '127.0.0.1', r));
  const health = (grpc.loadPackageDefinition(protoLoader.loadSync('grpc/health/v1/health.proto', { includeDirs: [PROTO_DIR] })) as unknown as {
    grpc: { health: { v1: { Health: { service: grpc.ServiceDefinition } } } };
  }).grpc.health.v1.Health.service;
  const statuses: Record<string, string> = { '': 'SERVING', ready: 'SERVING', draining: 'NOT_SERVING' };
  grpcApp = new grpc.Server();
  grpcApp.addService(health, {
    Check: (call: grpc.ServerUnaryCall<{ service: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const status = statuses[call.request.service];
      if (status === undefined) callback({ code: grpc.status.NOT_FOUND, details: 'unknown service' });
      else callback(null, { status });
    },
  });
  grpcPort = await new Promise<number>((resolve, reject) =>
    grpcApp.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  hungApp = createNetServer((s) => {
    hungConnections.add(s);
    // Read (and drop) what comes, so the prober's close is seen.
    s.resume();
    s.on('error', () => {});
    s.on('close', () => hungConnections.delete(s));
  });
  hungApp.on('error', () => {});
  await new Promise<void>((r) => hungApp.listen(0, '127.0.0.1', r));
  const dead = await deadPort();
  dir = mkdtempSync(join(tmpdir(), 'pillion-status-port-'));
  meshFile = join(dir, 'mesh.yaml');
  inbound = await freePort();
  writeFileSync(
    meshFile,
    `
services:
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${inbound} }]
`,
  );
  const probes = {
    '/app-health/web/readyz': { httpGet: { path: '/ready', port: app.port, scheme: 'HTTP', httpHeaders: [{ name: 'X-A', value: 'b' }, { name: 'Host', value: 'probe.local' }] }, timeoutSeconds: 2 },
    '/app-health/web/livez': { tcpSocket: { port: app.port }, timeoutSeconds: 1 },
    '/app-health/web/startupz': { httpGet: { path: '/fail', port: app.port } },
    '/app-health/down/readyz': { httpGet: { path: '/ready', port: dead } },
    '/app-health/down/livez': { tcpSocket: { port: dead } },
    '/app-health/slow/readyz': { httpGet: { path: '/slow', port: app.port }, timeoutSeconds: 1 },
    '/app-health/slow/livez': { httpGet: { path: '/slow', port: app.port }, timeoutSeconds: 5 },
    '/app-health/tls/readyz': { httpGet: { path: '/', port: (tlsApp.address() as AddressInfo).port, scheme: 'HTTPS', host: '127.0.0.1' } },
    '/app-health/grpc/livez': { grpc: { port: grpcPort } },
    '/app-health/grpc/readyz': { grpc: { port: grpcPort, service: 'ready' } },
    '/app-health/grpc/startupz': { grpc: { port: grpcPort, service: 'draining' } },
    '/app-health/grpc-unknown/readyz': { grpc: { port: grpcPort, service: 'nobody' } },
    '/app-health/grpc-down/readyz': { grpc: { port: dead }, timeoutSeconds: 2 },
    '/app-health/grpc-hung/readyz': { grpc: { port: (hungApp.address() as AddressInfo).port }, timeoutSeconds: 30 },
    '/app-health/grpc-hung/livez': { grpc: { port: (hungApp.address() as AddressInfo).port }, timeoutSeconds: 1 },
  };
  proxy = start(['--app-port', String(app.port), '--inbound-port', String(inbound), '--status-port', '0'], { PILLION_APP_PROBES: JSON.stringify(probes) });
  statusPort = Number((await proxy.waitForLine((l) => l.msg === 'listening' && l.listener === 'status')).port);
  adminPort = Number((await proxy.waitForLine((l) => l.msg === 'admin listening')).port);
  await proxy.waitForLine((l) => l.msg === 'proxy ready');
}, 30_000);

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await app?.close();
  await new Promise<void>((r) => (tlsApp === undefined ? r() : tlsApp.close(() => r())));
  grpcApp?.forceShutdown();
  for (const c of hungConnections) c.destroy();
  hungApp?.close();
  ca?.close();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('pillion proxy --status-port', () => {
  it('refuses the plaintext probe on the STRICT inbound port, and runs it through the status port', async () => {
    const direct = await request(inbound, { path: '/ready' }).then(
      (r) => r.status,
      (err: Error) => err.message,
    );
    expect(direct).not.toBe(200);
    // Refused for being plaintext on a TLS-only port, not for anything else.
    const metrics = (await request(adminPort, { path: '/metrics' })).body;
    expect(metrics).toMatch(/pillion_tls_handshake_failures_total\{direction="inbound",reason="not_tls"\} [1-9]/);
    const before = app.hits;
    const res = await probe('/app-health/web/readyz');
    expect(res.status).toBe(200);
    expect(app.hits).toBe(before + 1);
    const seen = JSON.parse(res.body) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe('/ready');
    expect(seen.headers['x-a']).toBe('b');
    expect(seen.headers.host).toBe('probe.local');
    // HEAD: the same probe, no body.
    expect((await probe('/app-health/web/readyz', 'HEAD')).status).toBe(200);
  });

  it('answers on IPv6 as on IPv4, for a kubelet probing the pod\'s IPv6 address', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = rawRequest({ host: '::1', port: statusPort, path: '/healthz/ready', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(200);
  });

  it("answers with the app's own failing status", async () => {
    const res = await probe('/app-health/web/startupz');
    expect(res.status).toBe(500);
    expect(res.body).toBe('broken');
  });

  it('answers 503 app_probe_failed when the app is down or too slow', async () => {
    const down = await probe('/app-health/down/readyz');
    expect(down.status).toBe(503);
    expect(down.headers['x-pillion-reason']).toBe('app_probe_failed');
    expect(down.body).toMatch(/^app probe failed: connection refused by 127\.0\.0\.1:\d+\n$/);
    const slow = await probe('/app-health/slow/readyz');
    expect(slow.status).toBe(503);
    expect(slow.headers['x-pillion-reason']).toBe('app_probe_failed');
    expect(slow.body).toContain('no answer within 1 s');
  });

  it('runs tcpSocket probes: connected 200, refused 503', async () => {
    expect((await probe('/app-health/web/livez')).status).toBe(200);
    const down = await probe('/app-health/down/livez');
    expect(down.status).toBe(503);
    expect(down.headers['x-pillion-reason']).toBe('app_probe_failed');
  });

  it('runs grpc probes (grpc.health.v1.Health/Check): SERVING 200; NOT_SERVING, an unknown service or no server 503', async () => {
    const serving = await probe('/app-health/grpc/livez');
    expect(serving.status).toBe(200);
    expect(serving.body).toBe('SERVING\n');
    expect((await probe('/app-health/grpc/readyz')).status).toBe(200);
    const notServing = await probe('/app-health/grpc/startupz');
    expect(notServing.status).toBe(503);
    expect(notServing.headers['x-pillion-reason']).toBe('app_probe_failed');
    expect(notServing.body).toMatch(/health status NOT_SERVING for service "draining"/);
    const unknown = await probe('/app-health/grpc-unknown/readyz');
    expect(unknown.status).toBe(503);
    expect(unknown.body).toMatch(/gRPC NOT_FOUND: unknown service/);
    const down = await probe('/app-health/grpc-down/readyz');
    expect(down.status).toBe(503);
    expect(down.body).toMatch(/gRPC UNAVAILABLE/);
  });

  it('closes the connection of a grpc probe that timed out or whose prober gave up, while the app has not answered HTTP/2', async () => {
    for (let i = 0; i < 5; i++) {
      const req = rawRequest({ host: '127.0.0.1', port: statusPort, path: '/app-health/grpc-hung/readyz', agent: false });
      req.on('error', () => {});
      req.end();
      await new Promise((r) => setTimeout(r, 150));
      req.destroy();
    }
    const timedOut = await probe('/app-health/grpc-hung/livez');
    expect(timedOut.status).toBe(503);
    expect(timedOut.body).toMatch(/gRPC DEADLINE_EXCEEDED/);
    for (let i = 0; i < 50 && hungConnections.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    // The app saw the probes' connections, and none is left open.
    expect(hungConnections.size).toBe(0);
  });

  it('probes HTTPS without verifying the certificate, as the kubelet does', async () => {
    const res = await probe('/app-health/tls/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toBe('tls ok');
  });

  it('answers 404 for other paths and 405 for other methods', async () => {
    expect((await probe('/app-health/other/readyz')).status).toBe(404);
    expect((await probe('/')).status).toBe(404);
    const post = await probe('/app-health/web/readyz', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });

  it('counts probes per configured path and result', async () => {
    const metrics = (await request(adminPort, { path: '/metrics' })).body;
    expect(metrics).toMatch(/pillion_app_probes_total\{path="\/app-health\/web\/readyz",result="success"\} [1-9]/);
    expect(metrics).toMatch(/pillion_app_probes_total\{path="\/app-health\/down\/livez",result="failure"\} [1-9]/);
    expect(metrics).not.toContain('/app-health/other/readyz');
  });

  it('runs at most 32 probes at once; more are answered 503 overload and the proxy carries on', async () => {
    const replies = await Promise.all(Array.from({ length: 40 }, () => probe('/app-health/slow/livez')));
    const statuses = replies.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(32);
    const overloaded = replies.filter((r) => r.status === 503);
    expect(overloaded).toHaveLength(8);
    for (const r of overloaded) expect(r.headers['x-pillion-reason']).toBe('overload');
    expect((await probe('/app-health/web/livez')).status).toBe(200);
  });

  it('stops a probe whose prober went away, freeing its slot', async () => {
    // 32 slow probes whose client gives up after 200 ms, as the kubelet does at its timeoutSeconds.
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        const req = rawRequest({ host: '127.0.0.1', port: statusPort, path: '/app-health/slow/livez', agent: false });
        req.on('error', () => {});
        req.end();
        await new Promise((r) => setTimeout(r, 200));
        req.destroy();
      }),
    );
    await new Promise((r) => setTimeout(r, 50));
    const res = await probe('/app-health/web/livez');
    expect(res.headers['x-pillion-reason']).toBeUndefined();
    expect(res.status).toBe(200);
  });

  it('runs one probe per connection: requests pipelined behind the first start none', async () => {
    const before = app.hits;
    const s = connect(statusPort, '127.0.0.1');
    s.on('error', () => {});
    let answer = '';
    s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
    s.write('GET /app-health/web/readyz HTTP/1.1\r\nhost: x\r\n\r\n'.repeat(40));
    await once(s, 'close');
    // Time for probes that were started to reach the app.
    await new Promise((r) => setTimeout(r, 200));
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(app.hits).toBe(before + 1);
  });

  it('closes connections past 256 at accept, and serves again once they are gone', async () => {
    const idle: Socket[] = [];
    try {
      for (let i = 0; i < 256; i++) {
        const s = connect(statusPort, '127.0.0.1');
        s.on('error', () => {});
        idle.push(s);
        await once(s, 'connect');
      }
      const refused = await request(statusPort, { path: '/healthz/ready' }).then(
        (r) => r.status,
        (err: Error) => err.message,
      );
      expect(refused).not.toBe(200);
      const warning = await proxy.waitForLine((l) => String(l.msg).startsWith('status port: connections past the limit'));
      expect(warning.maxConnections).toBe(256);
    } finally {
      for (const s of idle) s.destroy();
    }
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      status = await request(statusPort, { path: '/healthz/ready' }).then(
        (r) => r.status,
        () => 0,
      );
      if (status !== 200) await new Promise((r) => setTimeout(r, 20));
    }
    expect(status).toBe(200);
  });

  it('answers /healthz/ready 200 when ready and 503 DRAINING after POST /drain', async () => {
    const ready = await probe('/healthz/ready');
    expect(ready.status).toBe(200);
    expect(ready.body).toBe('ready\n');
    expect((await request(adminPort, { path: '/drain?inboundonly', method: 'POST' })).status).toBe(202);
    const draining = await probe('/healthz/ready');
    expect(draining.status).toBe(503);
    expect(draining.body).toBe((await request(adminPort, { path: '/ready' })).body);
    expect(draining.body).toBe('DRAINING\n');
  });
});

describe('pillion proxy --status-port with --concurrency 2', () => {
  it('is served by the primary alone, and refuses a port in use', async () => {
    const probes = { '/app-health/web/livez': { tcpSocket: { port: app.port } } };
    const p = start(['--app-port', String(app.port), '--inbound-port', '0', '--status-port', '0', '--concurrency', '2'], { PILLION_APP_PROBES: JSON.stringify(probes) });
    const port = Number((await p.waitForLine((l) => l.msg === 'listening' && l.listener === 'status')).port);
    await p.waitForLine((l) => l.msg === 'proxy ready', 20_000);
    expect(p.lines.filter((l) => l.listener === 'status')).toHaveLength(1);
    expect((await request(port, { path: '/app-health/web/livez' })).status).toBe(200);
    expect((await request(port, { path: '/healthz/ready' })).status).toBe(200);
    const clash = start(['--app-port', String(app.port), '--inbound-port', '0', '--status-port', String(port)], { PILLION_APP_PROBES: JSON.stringify(probes) });
    expect(await clash.exited).toBe(1);
    expect(clash.stderr).toContain(`--status-port ${port}: listen EADDRINUSE`);
  }, 30_000);
});

describe('PILLION_APP_PROBES', () => {
  it('refuses to start on a probe it cannot run, naming the key and the field', async () => {
    const p = start(['--status-port', '0'], { PILLION_APP_PROBES: JSON.stringify({ '/app-health/web/readyz': { exec: { command: ['true'] } } }) });
    expect(await p.exited).toBe(2);
    expect(p.stderr).toContain('PILLION_APP_PROBES: "/app-health/web/readyz": exec:');
    expect(p.lines.some((l) => l.msg === 'listening')).toBe(false);
  });

  it('refuses a named port and invalid JSON', async () => {
    const named = start(['--status-port', '0'], { PILLION_APP_PROBES: JSON.stringify({ '/app-health/web/livez': { tcpSocket: { port: 'http' } } }) });
    const notJson = start(['--status-port', '0'], { PILLION_APP_PROBES: '{"/a": ' });
    expect(await named.exited).toBe(2);
    expect(named.stderr).toContain('"/app-health/web/livez": tcpSocket.port: expected a port number');
    expect(await notJson.exited).toBe(2);
    expect(notJson.stderr).toContain('PILLION_APP_PROBES: not JSON');
  });
});
