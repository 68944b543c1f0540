// Two "pods" on one machine (root only): two network namespaces joined by a veth pair, each with an app, its
// sidecar (`pillion proxy --interception redirect`, workload identity from files) under its own uid via setpriv,
// and `pillion iptables` rules. The client app calls the server app with a plain http.get to the server pod's IP,
// no proxy settings; the request crosses both sidecars with mTLS; so do a raw TCP connection to a server-first app
// and a gRPC call. Also: STRICT refusing plaintext sent around the client's sidecar, a tcpdump capture of the veth,
// REGISTRY_ONLY refusing an address outside the mesh, a killed server sidecar, and `--cleanup` restoring the rules.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPodPair, netnsUnavailable, waitForOutput, type Netns, type PodPair } from '../helpers/netns.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';
import { originalDstAvailable, originalDstProblem } from '../../src/listener/original-dst.js';
import { TestCa } from '../tls/test-ca.js';
import { findTool } from '../../src/intercept/iptables.js';

const PROBE = fileURLToPath(new URL('../fixtures/netns-probe.mjs', import.meta.url));
const CLIENT_UID = 1337;
const SERVER_UID = 1338;
const TD = 'spiffe://cluster.local/ns/default/sa';

const unavailable = netnsUnavailable() ?? (originalDstAvailable() ? undefined : `no native helper: ${originalDstProblem()}`);
if (unavailable) console.warn(`skipping the two-pod test: ${unavailable}`);

interface TwoPods {
  readonly pods: PodPair;
  readonly serverSidecar: PillionProcess;
  readonly clientSidecar: PillionProcess;
  /** `iptables-save -t nat` and `ip6tables-save -t nat` of each pod before `--apply` (see natRules). */
  readonly rulesBefore: { readonly pod: string; readonly peer: string };
  close(): Promise<void>;
}

/**
 * Client pod (pods.pod) and server pod (pods.peer), each with its rules and its sidecar under its own uid; the
 * server app (a netns-probe mode) listens on every address at `port`, the port of service "server".
 */
/** A namespace's nat rules, IPv4 then IPv6, without the comments and counters that change between two saves. */
function natRules(ns: Netns): string {
  const dump = ns.run('iptables-save', ['-t', 'nat']) + ns.run('ip6tables-save', ['-t', 'nat']);
  return dump.split('\n').filter((l) => !l.startsWith('#')).map((l) => l.replace(/ \[\d+:\d+\]$/, '')).join('\n');
}

async function startTwoPods(
  prefix: string,
  port: number,
  protocol: 'http' | 'grpc' | 'tcp',
  app: readonly [string, string],
  policy: 'ALLOW_ANY' | 'REGISTRY_ONLY' = 'ALLOW_ANY',
  /** More YAML for service "server" (indented as its fields), e.g. its authorization. */
  serverExtra = '',
): Promise<TwoPods> {
  const pods = createPodPair(prefix);
  const ca = new TestCa();
  const dir = mkdtempSync(join(tmpdir(), 'pillion-two-pods-'));
  const children: ChildProcess[] = [];
  const sidecars: PillionProcess[] = [];
  const close = async (): Promise<void> => {
    for (const s of sidecars) s.child.kill('SIGKILL');
    await Promise.all(sidecars.map((s) => s.exited));
    for (const c of children) c.kill();
    pods.delete();
    ca.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    chmodSync(dir, 0o755);
    const meshFile = join(dir, 'mesh.yaml');
    writeFileSync(
      meshFile,
      `outboundTrafficPolicy: { mode: ${policy} }
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: ${pods.podV4}, port: 8080 }]
  - name: server
    ports: [{ port: ${port}, protocol: ${protocol} }]
    endpoints: [{ address: ${pods.peerV4}, port: ${port} }, { address: ${pods.peerV6}, port: ${port} }]
    policy: { mtls: STRICT, retries: { attempts: 0 } }
${serverExtra}`,
    );
    chmodSync(meshFile, 0o644);
    const startSidecar = (ns: Netns, service: string, uid: number, appPort: number): PillionProcess => {
      const cert = ca.issue({ spiffeId: `${TD}/${service}`, cn: service });
      // The sidecar runs as its own uid and must read its identity (test keys, in a temporary directory).
      chmodSync(ca.dir, 0o755);
      for (const f of readdirSync(ca.dir)) chmodSync(join(ca.dir, f), 0o644);
      const wrapper = ['ip', 'netns', 'exec', ns.name, 'setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups'];
      const args = ['proxy', '--config', meshFile, '--service', service, '--interception', 'redirect', '--app-port', String(appPort)];
      const p = runPillion([...args, '--cert', cert.certFile, '--key', cert.keyFile, '--ca', ca.caFile], MAIN, wrapper);
      sidecars.push(p);
      return p;
    };
    // A rule of the pod's own (as a CNI's) that the sidecar's rules must leave alone and --cleanup keep.
    for (const ns of [pods.pod, pods.peer]) {
      ns.run('iptables', ['-t', 'nat', '-A', 'POSTROUTING', '-d', '192.0.2.1/32', '-j', 'RETURN']);
      ns.run('ip6tables', ['-t', 'nat', '-A', 'POSTROUTING', '-d', '2001:db8::1/128', '-j', 'RETURN']);
    }
    const rulesBefore = { pod: natRules(pods.pod), peer: natRules(pods.peer) };
    pods.pod.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(CLIENT_UID), '--apply']);
    pods.peer.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(SERVER_UID), '--apply']);
    // The server app listens on every address, as a pod's app does; the client app is only a client here.
    const appProcess = pods.peer.spawn(process.execPath, [PROBE, ...app]);
    appProcess.on('error', () => {});
    children.push(appProcess);
    await waitForOutput(appProcess, 'ready');
    const serverSidecar = startSidecar(pods.peer, 'server', SERVER_UID, port);
    const clientSidecar = startSidecar(pods.pod, 'client', CLIENT_UID, 8080);
    await Promise.all([serverSidecar, clientSidecar].map((s) => s.waitForLine((l) => l.msg === 'proxy ready')));
    return { pods, serverSidecar, clientSidecar, rulesBefore, close };
  } catch (err) {
    await close();
    throw err;
  }
}

describe.skipIf(unavailable !== undefined)('two pods, transparent sidecars, mTLS between them (HTTP)', () => {
  let two: TwoPods;
  let pods: PodPair;
  let serverSidecar: PillionProcess;

  beforeAll(async () => {
    // REGISTRY_ONLY: the server pod's app also listens on 8081, a port no service declares (outside the mesh).
    two = await startTwoPods('pl-two', 8080, 'http', ['http', 'server=8080,other=8081'], 'REGISTRY_ONLY');
    ({ pods, serverSidecar } = two);
  }, 30_000);

  afterAll(async () => {
    await two?.close();
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

  it('over IPv6 too: a plain http.get to the server pod\'s IPv6 address crosses both sidecars with mTLS', async () => {
    const out = pods.pod.run(process.execPath, [PROBE, 'get', `http://[${pods.peerV6}]:8080/two-pods-v6`, '5000']).trim();
    expect(out.startsWith('200 ')).toBe(true);
    const seen = JSON.parse(out.slice(4)) as { name: string; headers: Record<string, string> };
    expect(seen.name).toBe('server');
    expect(seen.headers['x-forwarded-client-cert']).toContain(`URI=${TD}/client`);
    const inbound = await serverSidecar.waitForLine((l) => l.path === '/two-pods-v6');
    expect(inbound).toMatchObject({ downstream_peer_principal: `${TD}/client`, upstream_cluster: 'inbound:8080' });
    const outbound = await two.clientSidecar.waitForLine((l) => l.path === '/two-pods-v6');
    // The service has the pod's IPv4 and IPv6 endpoint: the sidecar-to-sidecar hop takes either.
    expect(outbound.upstream_cluster).toBe('server.default:8080');
    expect([`${pods.peerV4}:8080`, `[${pods.peerV6}]:8080`]).toContain(outbound.upstream_host);
  });

  it('the server sidecar\'s metrics count the client\'s requests by its SPIFFE identity', () => {
    const text = pods.peer.run(process.execPath, ['-e', "fetch('http://127.0.0.1:15000/stats/prometheus').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    const m = new RegExp(`pillion_downstream_peer_requests_total\\{peer="${TD}/client",protocol="http"\\} (\\d+)`).exec(text);
    expect(m, text.split('\n').filter((l) => l.includes('peer')).join('\n')).not.toBeNull();
    expect(Number(m![1])).toBeGreaterThanOrEqual(2);
  });

  it('the server sidecar (STRICT) refuses a plaintext request made around the client\'s sidecar', () => {
    // As the client's proxy uid, which the client pod's rules let out unredirected.
    const out = pods.pod.run('setpriv', ['--reuid', String(CLIENT_UID), '--regid', String(CLIENT_UID), '--clear-groups', process.execPath, PROBE, 'get', `http://${pods.peerV4}:8080/plain`, '5000']).trim();
    expect(out.startsWith('200')).toBe(false);
    expect(out).toMatch(/^error (ECONNRESET|EPIPE)$/);
  });

  it.skipIf(findTool('tcpdump') === undefined)('what crosses the veth between the sidecars is TLS (tcpdump in the server pod)', async (ctx) => {
    const file = join(tmpdir(), `pillion-veth-${process.pid}.pcap`);
    // Only the pods' traffic on the veth (the server sidecar's plaintext hop to its app is on lo, 127.0.0.1).
    const dump = pods.peer.spawn(findTool('tcpdump')!, ['-i', 'any', '-U', '-s', '0', '-w', file, 'host', pods.podV4, 'and', 'tcp', 'port', '8080']);
    dump.on('error', () => {});
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('tcpdump did not start')), 10_000);
        dump.stderr!.on('data', (d: Buffer) => d.toString().includes('listening on') && (clearTimeout(timer), resolve()));
      });
      const marker = `/secret-${process.pid}`;
      expect(pods.pod.run(process.execPath, [PROBE, 'get', `http://${pods.peerV4}:8080${marker}`, '5000']).startsWith('200 ')).toBe(true);
      // The control: plaintext sent around the client's sidecar shows up in the same capture.
      const around = `/around-${process.pid}`;
      pods.pod.run('setpriv', ['--reuid', String(CLIENT_UID), '--regid', String(CLIENT_UID), '--clear-groups', process.execPath, PROBE, 'get', `http://${pods.peerV4}:8080${around}`, '5000']);
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      dump.kill('SIGINT');
      await new Promise((r) => dump.once('exit', r));
    }
    const captured = readFileSync(file);
    rmSync(file, { force: true });
    if (!captured.includes(`/around-${process.pid}`)) {
      // Some sandboxes give packet sockets nothing (measured here: an empty capture even of a plain connect); the
      // STRICT refusal above is then the proof that the hop is TLS.
      console.warn(`skipping the capture check: tcpdump captured nothing on the veth (${captured.length} bytes), packet capture does not work here`);
      ctx.skip();
    }
    expect(captured.includes(`/secret-${process.pid}`)).toBe(false);
    // A TLS 1.x handshake record (content type 22, version 3.x) from the client's sidecar.
    expect(captured.includes(Buffer.from([0x16, 0x03, 0x01])) || captured.includes(Buffer.from([0x16, 0x03, 0x03]))).toBe(true);
  });

  it('REGISTRY_ONLY: the client app\'s HTTP and TCP to an address outside the mesh are refused by its sidecar, counted', () => {
    // peerV4:8081 answers (the server pod's app listens there) but no service declares it.
    const out = pods.pod.run(process.execPath, [PROBE, 'get', `http://${pods.peerV4}:8081/outside`, '5000']).trim();
    expect(out).toMatch(/^502 \[direct_response\] .*REGISTRY_ONLY/);
    // Raw TCP (the client speaks nothing: after the sniff wait it is TCP): closed, never passed through.
    expect(pods.pod.run(process.execPath, [PROBE, 'connect', pods.peerV4, '8081', '5000']).trim()).toMatch(/^(error ECONNRESET|)$/);
    const text = pods.pod.run(process.execPath, ['-e', "fetch('http://127.0.0.1:15000/stats/prometheus').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    expect(text).toMatch(/pillion_local_replies_total\{reason="direct_response"\} 1\b/);
    expect(text).toMatch(/pillion_tcp_connections_total\{cluster="BlackHoleCluster"\} 1\b/);
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

  it('`pillion iptables --cleanup` in each pod leaves its nat rules (IPv4 and IPv6) exactly as before --apply', () => {
    expect(natRules(pods.pod)).not.toBe(two.rulesBefore.pod);
    pods.pod.run(process.execPath, [MAIN, 'iptables', '--cleanup']);
    pods.peer.run(process.execPath, [MAIN, 'iptables', '--cleanup']);
    expect(natRules(pods.pod)).toBe(two.rulesBefore.pod);
    expect(natRules(pods.peer)).toBe(two.rulesBefore.peer);
    expect(two.rulesBefore.pod).toContain('-A POSTROUTING -d 192.0.2.1/32 -j RETURN');
    // And the inbound passthrough's IPv6 source that --apply put on lo is gone.
    for (const ns of [pods.pod, pods.peer]) expect(ns.run('ip', ['-6', 'addr', 'show', 'dev', 'lo'])).not.toContain('::6/128');
  });
});

describe.skipIf(unavailable !== undefined)('two pods, transparent sidecars, mTLS between them: RBAC port rules', () => {
  let two: TwoPods;

  beforeAll(async () => {
    const authz = '    authorization:\n      deny: [{ name: no-8080, ports: [8080] }]\n';
    two = await startTwoPods('pl-azp', 8080, 'http', ['http', 'server=8080'], 'ALLOW_ANY', authz);
  }, 30_000);

  afterAll(async () => {
    await two?.close();
  });

  // The mTLS connection arrives on the redirect port; the rule names the port the client dialed (the TLS socket's
  // wrapped connection carries it). Before, the rule never matched and the app answered 200.
  it('a deny rule on the dialed port refuses an intercepted mTLS request (403)', () => {
    const out = two.pods.pod.run(process.execPath, [PROBE, 'get', `http://${two.pods.peerV4}:8080/denied`, '5000']).trim();
    expect(out).toMatch(/^403 \[unauthorized\] /);
  });
});

describe.skipIf(unavailable !== undefined)('two pods, transparent sidecars, mTLS between them (TCP)', () => {
  let two: TwoPods;

  beforeAll(async () => {
    // A server-first protocol (as MySQL or SMTP): the app speaks as soon as the connection opens.
    two = await startTwoPods('pl-tcp', 5432, 'tcp', ['serve', 'db=5432']);
  }, 30_000);

  afterAll(async () => {
    await two?.close();
  });

  it('a raw TCP connection to the server pod IP gets the server-first greeting through both sidecars', async () => {
    const { pods } = two;
    // The app's greeting ("db ..."), or "timeout" had a sidecar waited for the client to speak first.
    const out = pods.pod.run(process.execPath, [PROBE, 'connect', pods.peerV4, '5432', '5000']).trim();
    expect(out).toMatch(/^db /);
    const inbound = await two.serverSidecar.waitForLine((l) => l.protocol === 'TCP' && l.upstream_cluster === 'inbound:5432');
    expect(inbound.downstream_peer_principal).toBe(`${TD}/client`);
    const outbound = await two.clientSidecar.waitForLine((l) => l.protocol === 'TCP');
    expect(outbound.upstream_cluster).toBe('server.default:5432');
  });
});

describe.skipIf(unavailable !== undefined)('two pods, transparent sidecars, mTLS between them (gRPC)', () => {
  let two: TwoPods;

  beforeAll(async () => {
    two = await startTwoPods('pl-grpc', 9090, 'grpc', ['grpc', 'echo=9090']);
  }, 30_000);

  afterAll(async () => {
    await two?.close();
  });

  it('a plain gRPC call to the server pod IP crosses both sidecars (HTTP/2, :authority = the dialed address)', async () => {
    const { pods } = two;
    const out = pods.pod.run(process.execPath, [PROBE, 'grpc-call', `${pods.peerV4}:9090`, 'hi', '5000']).trim();
    // The server app saw the client's identity in x-forwarded-client-cert, set by the server's sidecar.
    expect(out).toMatch(new RegExp(`^echo:hi .*URI=${TD}/client`));
    const inbound = await two.serverSidecar.waitForLine((l) => l.path === '/pillion.test.Echo/Unary');
    expect(inbound.downstream_peer_principal).toBe(`${TD}/client`);
    const outbound = await two.clientSidecar.waitForLine((l) => l.path === '/pillion.test.Echo/Unary');
    expect(outbound.upstream_cluster).toBe('server.default:9090');
  });
});
