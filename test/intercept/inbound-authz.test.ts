// RBAC `ports` rules under transparent interception (root only): iptables sends every inbound connection to the
// sidecar's redirect port, so the port a rule names must be the original destination port (Envoy's destination
// port once original_dst restored it), not the port the connection landed on. Before this was so, a deny rule on
// a port never matched an intercepted connection (HTTP or TCP): a bypass.
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

const unavailable = netnsUnavailable() ?? (originalDstAvailable() ? undefined : `no native helper: ${originalDstProblem()}`);
if (unavailable) console.warn(`skipping the inbound interception authorization tests: ${unavailable}`);

describe.skipIf(unavailable !== undefined)('RBAC port rules on intercepted inbound connections', () => {
  let pods: PodPair;
  let dir: string;
  const children: ChildProcess[] = [];
  let sidecar: PillionProcess;

  beforeAll(async () => {
    pods = createPodPair('pl-az');
    dir = mkdtempSync(join(tmpdir(), 'pillion-inbound-authz-'));
    chmodSync(dir, 0o755); // the sidecar runs as PROXY_UID and reads the mesh file
    pods.peer.run(process.execPath, [MAIN, 'iptables', '--proxy-uid', String(PROXY_UID), '--apply']);
    for (const [mode, spec] of [['http', 'server=8080,metrics=9100'], ['serve', 'db=5432']] as const) {
      const child = pods.peer.spawn(process.execPath, [PROBE, mode, spec]);
      child.on('error', () => {});
      children.push(child);
      await waitForOutput(child, 'ready');
    }
    const file = join(dir, 'mesh.yaml');
    writeFileSync(
      file,
      `services:
  - name: server
    ports: [{ port: 8080, protocol: http }, { port: 9100, protocol: http }, { port: 5432, protocol: tcp }]
    endpoints: [{ address: ${pods.peerV4}, port: 8080 }, { address: ${pods.peerV4}, port: 9100 }, { address: ${pods.peerV4}, port: 5432 }]
    authorization:
      deny: [{ name: no-metrics, ports: [9100] }, { name: no-db, ports: [5432] }]
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

  function peer(mode: 'get' | 'connect', ...args: string[]): string {
    return pods.pod.run(process.execPath, [PROBE, mode, ...args]).trim();
  }

  it('HTTP: a deny rule on the dialed port refuses (403); another port is served', () => {
    expect(peer('get', `http://${pods.peerV4}:9100/m`, '3000')).toMatch(/^403 \[unauthorized\] /);
    expect(peer('get', `http://${pods.peerV4}:8080/s`, '3000')).toMatch(/^200 /);
  });

  it('TCP: a deny rule on the dialed port closes the connection before the app is dialled', () => {
    expect(peer('connect', pods.peerV4, '5432', '3000')).not.toMatch(/^db /);
    const metrics = pods.peer.run(process.execPath, ['-e', "fetch('http://127.0.0.1:15000/stats/prometheus').then((r) => r.text()).then((t) => process.stdout.write(t))"]);
    expect(metrics).toMatch(/pillion_rbac_decisions_total\{protocol="tcp",decision="denied",policy="no-db"\} 1\b/);
  });
});
