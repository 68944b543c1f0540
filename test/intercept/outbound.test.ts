// Transparent interception of the outbound side, end to end (root only): a client "pod" (network namespace) with
// `pillion iptables` rules and `pillion proxy --interception redirect` under its own uid, and a server "pod" across
// a veth pair. The client app dials real addresses with no proxy settings; the sidecar maps each original
// destination to a mesh service (an endpoint address, a virtual address), passes unknown ones through
// (ALLOW_ANY, PassthroughCluster) or refuses them (REGISTRY_ONLY, BlackHoleCluster).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPodPair, netnsUnavailable, waitForOutput, type PodPair } from '../helpers/netns.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';
import { originalDstAvailable, originalDstProblem } from '../../src/listener/original-dst.js';

const PROBE = fileURLToPath(new URL('../fixtures/netns-probe.mjs', import.meta.url));
const PROXY_UID = 1337;
const VIP = '10.96.0.20';

const unavailable = netnsUnavailable() ?? (originalDstAvailable() ? undefined : `no native helper: ${originalDstProblem()}`);
if (unavailable) console.warn(`skipping the outbound interception tests: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('outbound interception by original destination', () => {
  let pods: PodPair;
  let dir: string;
  const children: ChildProcess[] = [];
  let sidecar: PillionProcess | undefined;

  beforeAll(async () => {
    pods = createPodPair('pl-out');
    dir = mkdtempSync(join(tmpdir(), 'pillion-intercept-'));
    chmodSync(dir, 0o755); // the sidecar runs as PROXY_UID and reads the mesh file
    pods.pod.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(PROXY_UID), '--apply']);
    // The server pod: an HTTP service, a server-first TCP service, and something the mesh does not know.
    for (const [mode, spec] of [['http', 'server=8080,outside=9080'], ['serve', 'db=5432,external=9000']] as const) {
      const child = pods.peer.spawn(process.execPath, [PROBE, mode, spec]);
      child.on('error', () => {});
      children.push(child);
      await waitForOutput(child, 'ready');
    }
  });

  afterAll(async () => {
    await stopSidecar();
    for (const c of children) c.kill();
    pods?.delete();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function stopSidecar(): Promise<void> {
    if (sidecar === undefined) return;
    sidecar.child.kill('SIGKILL');
    await sidecar.exited;
    sidecar = undefined;
  }

  async function startSidecar(mode: 'ALLOW_ANY' | 'REGISTRY_ONLY'): Promise<PillionProcess> {
    await stopSidecar();
    const file = join(dir, `mesh-${mode}.yaml`);
    writeFileSync(
      file,
      `outboundTrafficPolicy: { mode: ${mode} }
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: ${pods.podV4}, port: 8080 }]
  - name: server
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: ${pods.peerV4}, port: 8080 }, { address: ${pods.peerV6}, port: 8080 }]
  - name: db
    addresses: [${VIP}]
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: ${pods.peerV4}, port: 5432 }]
`,
    );
    chmodSync(file, 0o644);
    const wrapper = ['ip', 'netns', 'exec', pods.pod.name, 'setpriv', '--reuid', String(PROXY_UID), '--regid', String(PROXY_UID), '--clear-groups'];
    sidecar = runPillion(['proxy', '--config', file, '--service', 'client', '--interception', 'redirect', '--app-port', '8080'], MAIN, wrapper);
    await sidecar.waitForLine((l) => l.msg === 'proxy ready');
    return sidecar;
  }

  /** What the client app gets, run in the client pod as root (not the proxy's uid): intercepted. */
  function app(mode: 'get' | 'connect', ...args: string[]): string {
    return pods.pod.run(process.execPath, [PROBE, mode, ...args]).trim();
  }

  function metrics(): string {
    return pods.pod.run(process.execPath, ['-e', "fetch('http://127.0.0.1:15000/stats/prometheus').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
  }

  it('HTTP to a service endpoint address goes through the sidecar to the service (IPv4 and IPv6)', async () => {
    const proc = await startSidecar('ALLOW_ANY');
    for (const url of [`http://${pods.peerV4}:8080/hello`, `http://[${pods.peerV6}]:8080/v6`]) {
      const out = app('get', url, '3000');
      expect(out.startsWith('200 ')).toBe(true);
      const body = JSON.parse(out.slice(4)) as { name: string; url: string; headers: Record<string, string> };
      expect(body.name).toBe('server');
      // The sidecar's router added it; a direct connection would not carry one.
      expect(body.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    }
    const log = await proc.waitForLine((l) => l.path === '/hello');
    expect(log.upstream_cluster).toBe('server.default:8080');
    expect(log.status).toBe(200);
  });

  it('TCP to a service\'s virtual address reaches its endpoint (no one listens at the virtual address)', async () => {
    await startSidecar('ALLOW_ANY');
    expect(app('connect', VIP, '5432', '3000')).toMatch(/^db /);
    expect(metrics()).toMatch(/pillion_tcp_connections_total\{cluster="db.default:5432"\} 1\b/);
  });

  it('ALLOW_ANY: an address the mesh does not know is passed through to itself, counted as PassthroughCluster', async () => {
    const proc = await startSidecar('ALLOW_ANY');
    expect(app('connect', pods.peerV4, '9000', '3000')).toMatch(/^external /);
    expect(metrics()).toMatch(/pillion_tcp_connections_total\{cluster="PassthroughCluster"\} 1\b/);
    const log = await proc.waitForLine((l) => l.upstream_cluster === 'PassthroughCluster');
    expect(log.upstream_host).toBe(`${pods.peerV4}:9000`);
  });

  it('HTTP to a service address with a Host the mesh does not know goes to the service of that address', async () => {
    const proc = await startSidecar('ALLOW_ANY');
    const out = app('get', `http://${pods.peerV4}:8080/odd-host`, '3000', 'no-such-name.example');
    expect(out.startsWith('200 ')).toBe(true);
    expect((JSON.parse(out.slice(4)) as { name: string }).name).toBe('server');
    const log = await proc.waitForLine((l) => l.path === '/odd-host');
    expect(log.upstream_cluster).toBe('server.default:8080');
  });

  it('ALLOW_ANY: HTTP to an address the mesh does not know is proxied as HTTP to that address (PassthroughCluster), IPv4 and IPv6', async () => {
    const proc = await startSidecar('ALLOW_ANY');
    for (const [url, host] of [[`http://${pods.peerV4}:9080/out-v4`, `${pods.peerV4}:9080`], [`http://[${pods.peerV6}]:9080/out-v6`, `[${pods.peerV6}]:9080`]] as const) {
      const out = app('get', url, '3000');
      expect(out.startsWith('200 ')).toBe(true);
      const body = JSON.parse(out.slice(4)) as { name: string; headers: Record<string, string> };
      expect(body.name).toBe('outside');
      // Proxied as HTTP (the router adds a request id), not piped as opaque TCP.
      expect(body.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      const log = await proc.waitForLine((l) => l.path === new URL(url).pathname);
      expect(log).toMatchObject({ upstream_cluster: 'PassthroughCluster', upstream_host: host, status: 200 });
    }
  });

  it('REGISTRY_ONLY: HTTP to an address the mesh does not know gets a 502 that says why, counted', async () => {
    await startSidecar('REGISTRY_ONLY');
    const out = app('get', `http://${pods.peerV4}:9080/blocked`, '3000');
    expect(out).toMatch(/^502 \[direct_response\] .*REGISTRY_ONLY/);
    expect(metrics()).toMatch(/pillion_local_replies_total\{reason="direct_response"\} 1\b/);
  });

  it('REGISTRY_ONLY: an address the mesh does not know is refused (connection closed), counted as BlackHoleCluster', async () => {
    await startSidecar('REGISTRY_ONLY');
    expect(app('connect', pods.peerV4, '9000', '3000')).toMatch(/^(error ECONNRESET|$)/);
    expect(metrics()).toMatch(/pillion_tcp_connections_total\{cluster="BlackHoleCluster"\} 1\b/);
    // Known services still work.
    expect(app('connect', VIP, '5432', '3000')).toMatch(/^db /);
    expect(app('get', `http://${pods.peerV4}:8080/still`, '3000')).toMatch(/^200 /);
  });
});
