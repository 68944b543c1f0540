// Two "pods" on one machine (root only): two network namespaces joined by a veth pair, each with an app, its
// sidecar (`pillion proxy --interception redirect`, workload identity from files) under its own uid via setpriv,
// and `pillion iptables` rules. The client app calls the server app with a plain http.get to the server pod's IP,
// no proxy settings; the request crosses both sidecars with mTLS. The skeleton of issue 17's proof: HTTP plaintext
// apps for now (gRPC, raw TCP, server-first protocols, a killed sidecar, a tcpdump capture are still to come).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPodPair, netnsUnavailable, waitForOutput, type Netns, type PodPair } from '../helpers/netns.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';
import { originalDstAvailable, originalDstProblem } from '../../src/listener/original-dst.js';
import { TestCa } from '../tls/test-ca.js';

const PROBE = fileURLToPath(new URL('../fixtures/netns-probe.mjs', import.meta.url));
const CLIENT_UID = 1337;
const SERVER_UID = 1338;
const TD = 'spiffe://cluster.local/ns/default/sa';

const unavailable = netnsUnavailable() ?? (originalDstAvailable() ? undefined : `no native helper: ${originalDstProblem()}`);
if (unavailable) console.warn(`skipping the two-pod test: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('two pods, transparent sidecars, mTLS between them', () => {
  let pods: PodPair;
  let dir: string;
  let ca: TestCa;
  const children: ChildProcess[] = [];
  const sidecars: PillionProcess[] = [];
  let serverSidecar: PillionProcess;

  function startSidecar(ns: Netns, service: string, uid: number, meshFile: string): PillionProcess {
    const cert = ca.issue({ spiffeId: `${TD}/${service}`, cn: service });
    // The sidecar runs as its own uid and must read its identity (test keys, in a temporary directory).
    chmodSync(ca.dir, 0o755);
    for (const f of readdirSync(ca.dir)) chmodSync(join(ca.dir, f), 0o644);
    const wrapper = ['ip', 'netns', 'exec', ns.name, 'setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups'];
    const p = runPillion(
      ['proxy', '--config', meshFile, '--service', service, '--interception', 'redirect', '--app-port', '8080', '--cert', cert.certFile, '--key', cert.keyFile, '--ca', ca.caFile],
      MAIN,
      wrapper,
    );
    sidecars.push(p);
    return p;
  }

  beforeAll(async () => {
    pods = createPodPair('pl-two');
    ca = new TestCa();
    dir = mkdtempSync(join(tmpdir(), 'pillion-two-pods-'));
    chmodSync(dir, 0o755);
    const meshFile = join(dir, 'mesh.yaml');
    writeFileSync(
      meshFile,
      `services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: ${pods.podV4}, port: 8080 }]
  - name: server
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: ${pods.peerV4}, port: 8080 }]
    policy: { mtls: STRICT, retries: { attempts: 0 } }
`,
    );
    chmodSync(meshFile, 0o644);
    pods.pod.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(CLIENT_UID), '--apply']);
    pods.peer.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(SERVER_UID), '--apply']);
    // The server app listens on every address, as a pod's app does; the client app is only a client here.
    const app = pods.peer.spawn(process.execPath, [PROBE, 'http', 'server=8080']);
    app.on('error', () => {});
    children.push(app);
    await waitForOutput(app, 'ready');
    serverSidecar = startSidecar(pods.peer, 'server', SERVER_UID, meshFile);
    const clientSidecar = startSidecar(pods.pod, 'client', CLIENT_UID, meshFile);
    await Promise.all([serverSidecar, clientSidecar].map((s) => s.waitForLine((l) => l.msg === 'proxy ready')));
  }, 30_000);

  afterAll(async () => {
    for (const s of sidecars) s.child.kill('SIGKILL');
    await Promise.all(sidecars.map((s) => s.exited));
    for (const c of children) c.kill();
    pods?.delete();
    ca?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a plain http.get to the server pod IP reaches the server app through both sidecars, with the client\'s identity', async () => {
    const out = pods.pod.run(process.execPath, [PROBE, 'get', `http://${pods.peerV4}:8080/two-pods`, '5000']).trim();
    expect(out.startsWith('200 ')).toBe(true);
    const seen = JSON.parse(out.slice(4)) as { name: string; url: string; headers: Record<string, string> };
    expect(seen).toMatchObject({ name: 'server', url: '/two-pods' });
    // Set by the server's sidecar from the client certificate mTLS proved: the request came through both.
    expect(seen.headers['x-forwarded-client-cert']).toContain(`URI=${TD}/client`);
    const inbound = await serverSidecar.waitForLine((l) => l.path === '/two-pods');
    expect(inbound.downstream_peer_principal).toBe(`${TD}/client`);
    expect(inbound.upstream_cluster).toBe('inbound:8080');
  });

  it('the server sidecar (STRICT) refuses a plaintext request made around the client\'s sidecar', () => {
    // As the client's proxy uid, which the client pod's rules let out unredirected.
    const out = pods.pod.run('setpriv', ['--reuid', String(CLIENT_UID), '--regid', String(CLIENT_UID), '--clear-groups', process.execPath, PROBE, 'get', `http://${pods.peerV4}:8080/plain`, '5000']).trim();
    expect(out.startsWith('200')).toBe(false);
    expect(out).toMatch(/^error (ECONNRESET|EPIPE)$/);
  });

  // Last: it kills the server's sidecar.
  it('with the server sidecar gone, the client gets a prompt 503 from its own sidecar, not a hang', async () => {
    serverSidecar.child.kill('SIGKILL');
    await serverSidecar.exited;
    const started = Date.now();
    const out = pods.pod.run(process.execPath, [PROBE, 'get', `http://${pods.peerV4}:8080/gone`, '5000']).trim();
    expect(out.startsWith('503 ')).toBe(true);
    expect(out).toContain('upstream connect failure: connect ECONNREFUSED');
    expect(Date.now() - started).toBeLessThan(4000);
  });
});
