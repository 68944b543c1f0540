// Transparent interception of the inbound side (root only): a server "pod" (network namespace) with `pillion
// iptables` rules and `pillion proxy --interception redirect` under its own uid, and an app listening on several
// ports; peers in the other namespace dial the pod's address directly (no sidecar of their own, plaintext). The
// original destination port picks the app port and its protocol handling; an undeclared port is passed through
// (InboundPassthroughCluster); an `auto` port with a server-first app is TCP after the mesh's
// protocolDetectionTimeout, never stalled.
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
const PROXY_UID = 1339;
/** The mesh's protocolDetectionTimeout here: well under the 1 s default, so the test sees which one ruled. */
const DETECT_MS = 300;

const unavailable = netnsUnavailable() ?? (originalDstAvailable() ? undefined : `no native helper: ${originalDstProblem()}`);
if (unavailable) console.warn(`skipping the inbound interception tests: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('inbound interception by original destination port', () => {
  let pods: PodPair;
  let dir: string;
  const children: ChildProcess[] = [];
  let sidecar: PillionProcess;

  beforeAll(async () => {
    pods = createPodPair('pl-in');
    dir = mkdtempSync(join(tmpdir(), 'pillion-inbound-'));
    chmodSync(dir, 0o755); // the sidecar runs as PROXY_UID and reads the mesh file
    // The server pod (pods.peer): its app on 8080 (main), 9100 (metrics), 5432 (server-first, declared auto) and
    // 7000 (server-first, not declared).
    pods.peer.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(PROXY_UID), '--apply']);
    for (const [mode, spec] of [['http', 'server=8080,metrics=9100'], ['serve', 'db=5432,other=7000']] as const) {
      const child = pods.peer.spawn(process.execPath, [PROBE, mode, spec]);
      child.on('error', () => {});
      children.push(child);
      await waitForOutput(child, 'ready');
    }
    const file = join(dir, 'mesh.yaml');
    writeFileSync(
      file,
      `protocolDetectionTimeout: ${DETECT_MS}ms
services:
  - name: server
    ports: [{ port: 8080, protocol: http }, { port: 9100, protocol: http }, { port: 5432, protocol: auto }]
    endpoints: [{ address: ${pods.peerV4}, port: 8080 }, { address: ${pods.peerV4}, port: 9100 }, { address: ${pods.peerV4}, port: 5432 }]
`,
    );
    chmodSync(file, 0o644);
    const wrapper = ['ip', 'netns', 'exec', pods.peer.name, 'setpriv', '--reuid', String(PROXY_UID), '--regid', String(PROXY_UID), '--clear-groups'];
    sidecar = runPillion(['proxy', '--config', file, '--service', 'server', '--interception', 'redirect', '--app-port', '8080'], MAIN, wrapper);
    await sidecar.waitForLine((l) => l.msg === 'proxy ready');
  }, 30_000);

  afterAll(async () => {
    if (sidecar !== undefined) {
      sidecar.child.kill('SIGKILL');
      await sidecar.exited;
    }
    for (const c of children) c.kill();
    pods?.delete();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** What a peer gets, run in the other namespace (no rules, no sidecar: plaintext straight to the pod). */
  function peer(mode: 'get' | 'connect', ...args: string[]): string {
    return pods.pod.run(process.execPath, [PROBE, mode, ...args]).trim();
  }

  function metrics(): string {
    return pods.peer.run(process.execPath, ['-e', "fetch('http://127.0.0.1:15000/stats/prometheus').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
  }

  it('a peer dialing the metrics port reaches the app\'s metrics port through the sidecar, not the main port', async () => {
    for (const [port, name] of [[9100, 'metrics'], [8080, 'server']] as const) {
      const out = peer('get', `http://${pods.peerV4}:${port}/port-${port}`, '3000');
      expect(out.startsWith('200 ')).toBe(true);
      const body = JSON.parse(out.slice(4)) as { name: string; headers: Record<string, string> };
      expect(body.name).toBe(name);
      // The sidecar's HTTP handling of that port added it; a connection passed through as TCP would not.
      expect(body.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      const log = await sidecar.waitForLine((l) => l.path === `/port-${port}`);
      expect(log.upstream_cluster).toBe(`inbound:${port}`);
    }
  });

  it('a port the service does not declare is passed through as TCP to the app (InboundPassthroughCluster), no loop', () => {
    expect(peer('connect', pods.peerV4, '7000', '3000')).toMatch(/^other /);
    expect(metrics()).toMatch(/pillion_tcp_connections_total\{cluster="InboundPassthroughCluster"\} 1\b/);
  });

  it('over IPv6, a declared port works, and an undeclared one is passed through from ::6 (on lo by --apply)', () => {
    const out = peer('get', `http://[${pods.peerV6}]:9100/v6`, '3000');
    expect(out.startsWith('200 ')).toBe(true);
    expect((JSON.parse(out.slice(4)) as { name: string }).name).toBe('metrics');
    const before = Number(/pillion_tcp_connections_total\{cluster="InboundPassthroughCluster"\} (\d+)/.exec(metrics())?.[1] ?? 0);
    expect(peer('connect', pods.peerV6, '7000', '3000')).toMatch(/^other /);
    expect(metrics()).toMatch(new RegExp(`pillion_tcp_connections_total\\{cluster="InboundPassthroughCluster"\\} ${before + 1}\\b`));
  });

  it('a server-first app on an auto port: the peer that waits gets the greeting after the protocol detection timeout', () => {
    const started = Date.now();
    // The probe only listens for the app's first line; "timeout" had the sidecar waited for the client to speak.
    expect(peer('connect', pods.peerV4, '5432', '5000')).toMatch(/^db /);
    const elapsed = Date.now() - started;
    // At least the configured wait (the sidecar sniffed first), well under the 1 s fixed fallback it replaces.
    expect(elapsed).toBeGreaterThanOrEqual(DETECT_MS);
    expect(elapsed).toBeLessThan(950);
    expect(metrics()).toMatch(/pillion_tcp_connections_total\{cluster="inbound:5432"\} 1\b/);
  });

  // Last: it edits the pod's rules (and puts them back).
  it('rules without the 127.0.0.6 exemption (older ones): the passthrough refuses its own loop instead of dialing for ever', async () => {
    const rule = ['-t', 'nat', '-D', 'PILLION_OUTPUT', '-s', '127.0.0.6/32', '-o', 'lo', '-j', 'RETURN'];
    pods.peer.run('iptables', rule);
    try {
      const started = Date.now();
      expect(peer('connect', pods.peerV4, '7000', '3000')).toMatch(/^(error ECONNRESET|)$/);
      expect(Date.now() - started).toBeLessThan(2500);
      const log = await sidecar.waitForLine((l) => l.x_pillion_reason === 'passthrough_loop');
      expect(log.upstream_cluster).toBe('InboundPassthroughCluster');
    } finally {
      pods.peer.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(PROXY_UID), '--apply']);
    }
    expect(peer('connect', pods.peerV4, '7000', '3000')).toMatch(/^other /);
  });
});
