// `pillion proxy --concurrency 2` as real processes: two worker processes accept on the same port, a config pushed
// over xDS reaches both, a killed worker is restarted while the port keeps serving, /metrics totals are the sum of
// the workers (and survive a worker's death), SIGTERM drains and leaves no process, and the primary's death takes
// the workers with it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { freePort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { runPillion, type PillionProcess } from '../helpers/process.js';
import { TYPE_URLS } from '../../src/config/protos.js';
import { badCluster, compile, meshYaml, NODE as XDS_NODE } from '../xds-client/fixtures.js';
import { startScriptedAds, type WireRequest } from '../xds-client/scripted-ads.js';

let dir: string;
let a: Backend;
let b: Backend;
let slow: Backend;
const procs: PillionProcess[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'pillion-conc-'));
  a = await startHttpBackend('a', (_q, res) => res.end('a'));
  b = await startHttpBackend('b', (_q, res) => res.end('b'));
  slow = await startHttpBackend('slow', (_q, res) => setTimeout(() => res.end('finished'), 500));
});

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all([a.close(), b.close(), slow.close()]);
  rmSync(dir, { recursive: true, force: true });
});

function mesh(port: number): string {
  return `services:
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${port} }]
  - name: slow
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${slow.port} }]
`;
}

interface Sidecar {
  proc: PillionProcess;
  admin: number;
  outbound: number;
}

async function sidecar(source: string[]): Promise<Sidecar> {
  const [admin, outbound, inbound] = [await freePort(), await freePort(), await freePort()];
  const proc = runPillion([
    'proxy', ...source, '--service', 'web', '--admin-port', String(admin), '--outbound-port', String(outbound),
    '--inbound-port', String(inbound), '--access-log', 'off', '--concurrency', '2',
  ]);
  procs.push(proc);
  await proc.waitForLine((l) => l.msg === 'proxy ready', 20_000);
  return { proc, admin, outbound };
}

async function adminGet(s: Sidecar, path: string): Promise<{ status: number; body: string }> {
  const r = await request(s.admin, { path });
  return { status: r.status, body: r.body };
}

interface Workers {
  concurrency: number;
  primary_pid: number;
  workers: { index: number; pid: number | null; state: string; configGeneration: number; restarts: number }[];
}

async function workers(s: Sidecar): Promise<Workers> {
  return JSON.parse((await adminGet(s, '/workers')).body) as Workers;
}

/** Envoy's per-worker listener stat, from /stats. */
async function perWorker(s: Sidecar): Promise<number[]> {
  const text = (await adminGet(s, '/stats?filter=worker_')).body;
  return [0, 1].map((i) => Number(new RegExp(`listener\\.outbound\\.worker_${i}\\.downstream_cx_total: (\\d+)`).exec(text)?.[1] ?? 0));
}

/** Sum of a Prometheus counter's samples whose line matches `match`. */
async function metricSum(s: Sidecar, name: string, match = ''): Promise<number> {
  const text = (await adminGet(s, '/metrics')).body;
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(name) && (line[name.length] === '{' || line[name.length] === ' ') && line.includes(match)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

/** Batches of 10 concurrent requests, each on its own connection; returns the bodies. */
async function batch(s: Sidecar): Promise<string[]> {
  const replies = await Promise.all(Array.from({ length: 10 }, () => request(s.outbound, { host: 'backend' })));
  return replies.map((r) => `${r.status} ${r.body}`);
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Sends batches until each worker has accepted more connections than in `since`; bounded. Returns requests sent. */
async function untilBothServed(s: Sidecar, since: number[], expectBody: string): Promise<number> {
  let sent = 0;
  for (let round = 0; round < 30; round++) {
    const bodies = await batch(s);
    sent += bodies.length;
    expect(new Set(bodies)).toEqual(new Set([`200 ${expectBody}`]));
    const now = await perWorker(s);
    if (now[0]! > since[0]! && now[1]! > since[1]!) return sent;
  }
  throw new Error(`one worker accepted no connection in 300: ${JSON.stringify(await perWorker(s))}`);
}

describe('pillion proxy --concurrency 2', () => {
  it('serves one port from two worker processes, totals their metrics, restarts a killed worker, and drains on SIGTERM', async () => {
    const file = join(dir, 'file.yaml');
    writeFileSync(file, mesh(a.port));
    const s = await sidecar(['--config', file]);
    expect((await adminGet(s, '/ready')).status).toBe(200);
    const w = await workers(s);
    expect(w.concurrency).toBe(2);
    expect(w.primary_pid).toBe(s.proc.child.pid);
    const pids = w.workers.map((x) => x.pid!);
    expect(new Set(pids).size).toBe(2);
    for (const pid of pids) expect(pid === s.proc.child.pid || !alive(pid)).toBe(false);
    expect(JSON.parse((await adminGet(s, '/server_info')).body).command_line_options.concurrency).toBe(2);
    // Limits accepted but enforced per process, not for the pod: the start warning names them.
    const perProcess = s.proc.lines.find((l) => typeof l.msg === 'string' && l.msg.startsWith('concurrency > 1: circuit breakers'))?.msg;
    for (const field of ['--max-connections', '--overload-rss-mb']) expect(perProcess).toContain(field);

    // Both workers accept on the one outbound port.
    const hitsBefore = a.hits;
    let sent = await untilBothServed(s, [0, 0], 'a');
    expect(a.hits - hitsBefore).toBe(sent);
    // /metrics is the sum over the workers: exactly the requests sent.
    expect(await metricSum(s, 'pillion_downstream_requests_total', 'direction="outbound"')).toBe(sent);
    expect(await metricSum(s, 'pillion_upstream_requests_total', 'cluster="backend.default:8080"')).toBe(sent);
    expect(await metricSum(s, 'pillion_config_updates_total', 'result="applied"')).toBe(1);

    // A killed worker: the port keeps serving, the worker comes back with a new pid and the config, /metrics keeps
    // its counts (as of the last scrape, which is the line above).
    process.kill(pids[1]!, 'SIGKILL');
    for (let i = 0; i < 3; i++) {
      expect(new Set(await batch(s))).toEqual(new Set(['200 a']));
      sent += 10;
    }
    await until('worker 1 restarted', async () => {
      const x = (await workers(s)).workers[1]!;
      return x.restarts === 1 && x.state === 'live' && x.pid !== pids[1];
    });
    expect((await adminGet(s, '/ready')).status).toBe(200);
    expect(await metricSum(s, 'pillion_worker_exits_total')).toBe(1);
    const restarted = (await workers(s)).workers[1]!.pid!;
    expect(alive(restarted)).toBe(true);
    sent += await untilBothServed(s, await perWorker(s), 'a');
    expect(await metricSum(s, 'pillion_downstream_requests_total', 'direction="outbound"')).toBe(sent);

    // SIGTERM: a request in flight finishes, then the primary and both workers are gone.
    const inFlight = request(s.outbound, { host: 'slow' }).catch((err: Error) => ({ status: 0, body: err.message }));
    await new Promise((r) => setTimeout(r, 150));
    s.proc.child.kill('SIGTERM');
    expect(await inFlight).toMatchObject({ status: 200, body: 'finished' });
    expect(await s.proc.exited).toBe(0);
    await until('workers gone', () => Promise.resolve(!alive(pids[0]!) && !alive(restarted)), 5_000);
  }, 60_000);

  it('applies a config pushed over xDS in both workers', async () => {
    const file = join(dir, 'xds.yaml');
    writeFileSync(file, mesh(a.port));
    const xdsPort = await freePort();
    const control = runPillion(['control', '--config', file, '--port', String(xdsPort), '--admin-port', '0']);
    procs.push(control);
    await control.waitForLine((l) => l.msg === 'xds listening');
    const s = await sidecar(['--xds', `127.0.0.1:${xdsPort}`]);
    await untilBothServed(s, [0, 0], 'a');
    const generation = Math.max(...(await workers(s)).workers.map((x) => x.configGeneration));

    writeFileSync(file, mesh(b.port));
    await until('both workers applied the push', async () => {
      const w = (await workers(s)).workers;
      return w.every((x) => x.configGeneration > generation && x.state === 'live');
    });
    expect((await adminGet(s, '/ready')).status).toBe(200);
    // Each worker now sends to b.
    await untilBothServed(s, await perWorker(s), 'b');

    s.proc.child.kill('SIGTERM');
    expect(await s.proc.exited).toBe(0);
    control.child.kill('SIGTERM');
    await control.exited;
  }, 60_000);

  it('never forwards a config the primary NACKs; the next good one reaches both workers', async () => {
    const server = await startScriptedAds();
    try {
      const [admin, outbound] = [await freePort(), await freePort()];
      const proc = runPillion([
        'proxy', '--xds', server.address, '--service', 'frontend', '--node-id', XDS_NODE.id, '--admin-port', String(admin),
        '--outbound-port', String(outbound), '--inbound-port', String(await freePort()), '--access-log', 'off', '--concurrency', '2',
      ]);
      procs.push(proc);
      const s: Sidecar = { proc, admin, outbound };
      const res = compile(meshYaml(a.port), { ...XDS_NODE, outboundPort: outbound });
      const is = (type: string, nonce: string) => (r: WireRequest) => r.type_url === type && r.response_nonce === nonce;
      await server.waitFor((r) => r.type_url === TYPE_URLS.Cluster, 10_000);
      server.send(TYPE_URLS.Cluster, 'c1', 'c1', res.clusters);
      server.send(TYPE_URLS.Listener, 'l1', 'l1', res.listeners);
      server.send(TYPE_URLS.ClusterLoadAssignment, 'e1', 'e1', res.endpoints);
      server.send(TYPE_URLS.RouteConfiguration, 'r1', 'r1', res.routes);
      await server.waitFor(is(TYPE_URLS.RouteConfiguration, 'r1'), 10_000);
      await until('ready', async () => (await adminGet(s, '/ready')).status === 200);
      const before = (await workers(s)).workers.map((x) => x.configGeneration);
      expect(before[0]).toBeGreaterThan(0);
      expect(before[1]).toBe(before[0]);

      server.send(TYPE_URLS.Cluster, 'c2', 'c2', [...res.clusters, badCluster()]);
      const nack = await server.waitFor(is(TYPE_URLS.Cluster, 'c2'), 10_000);
      expect(nack.error_detail?.message).toContain('bad.default:8080');
      expect((await workers(s)).workers.map((x) => x.configGeneration)).toEqual(before);
      expect(new Set(await batch(s))).toEqual(new Set(['200 a']));

      server.send(TYPE_URLS.Cluster, 'c3', 'c3', res.clusters);
      const ack = await server.waitFor(is(TYPE_URLS.Cluster, 'c3'), 10_000);
      expect(ack.error_detail).toBeUndefined();
      // The ACK is sent once both workers applied it.
      expect((await workers(s)).workers.map((x) => x.configGeneration)).toEqual([before[0]! + 1, before[0]! + 1]);
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    } finally {
      await server.close();
    }
  }, 60_000);

  it('fails to start, as one process does, when the workers cannot bind a port', async () => {
    const file = join(dir, 'busy.yaml');
    writeFileSync(file, mesh(a.port));
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    try {
      const proc = runPillion(['proxy', '--config', file, '--service', 'web', '--admin-port', '0', '--outbound-port', String(port), '--inbound-port', '0', '--concurrency', '2']);
      procs.push(proc);
      const pids: number[] = [];
      void proc.waitForLine((l) => l.msg === 'worker up' && typeof l.workerPid === 'number' && pids.push(l.workerPid) === 2, 20_000).catch(() => undefined);
      expect(await proc.exited).toBe(1);
      expect(proc.stderr).toMatch(/could not apply the config: listener outbound: cannot bind 127\.0\.0\.1:\d+: bind EADDRINUSE/);
      // At least the worker that reported the failure came up (the other may be killed while still starting);
      // without a pid the check below would pass vacuously.
      expect(pids.length).toBeGreaterThan(0);
      await until('workers gone', () => Promise.resolve(pids.every((pid) => !alive(pid))), 5_000);
    } finally {
      busy.close();
    }
  }, 30_000);

  it('an inbound-only drain closes the inbound port in every worker; outbound keeps serving', async () => {
    const file = join(dir, 'inbound.yaml');
    writeFileSync(file, mesh(a.port));
    const [admin, outbound, inbound] = [await freePort(), await freePort(), await freePort()];
    const proc = runPillion([
      'proxy', '--config', file, '--service', 'web', '--app-port', String(b.port), '--admin-port', String(admin),
      '--outbound-port', String(outbound), '--inbound-port', String(inbound), '--access-log', 'off', '--concurrency', '2',
    ]);
    procs.push(proc);
    await proc.waitForLine((l) => l.msg === 'proxy ready', 20_000);
    const s: Sidecar = { proc, admin, outbound };
    expect((await request(inbound, { host: 'web' })).body).toBe('b');
    expect((await request(admin, { path: '/drain?inboundonly', method: 'POST' })).status).toBe(202);
    await until('draining', async () => (await adminGet(s, '/ready')).body === 'DRAINING\n');
    // /ready flips when the primary starts the drain; each worker closes its listener when its message arrives, and
    // a connection caught in the backlog meanwhile is reset. Once one is refused, every later one must be.
    await until('inbound refused', () => request(inbound, { host: 'web' }).then(() => false, (err: Error) => /ECONNREFUSED/.test(err.message)));
    // If either worker still had the shared socket open, some of these would be accepted.
    for (let i = 0; i < 20; i++) await expect(request(inbound, { host: 'web' })).rejects.toThrow(/ECONNREFUSED/);
    expect(new Set(await batch(s))).toEqual(new Set(['200 a']));
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 30_000);

  it('takes its workers down when the primary dies', async () => {
    const file = join(dir, 'kill.yaml');
    writeFileSync(file, mesh(a.port));
    const s = await sidecar(['--config', file]);
    const pids = (await workers(s)).workers.map((x) => x.pid!);
    s.proc.child.kill('SIGKILL');
    await s.proc.exited;
    await until('workers gone', () => Promise.resolve(pids.every((pid) => !alive(pid))), 5_000);
  }, 30_000);
});
