// An injected pod run for real (root only): `pillion inject` makes a Deployment's pod spec, and its containers'
// commands run as the kubelet would run them, in a network namespace standing in for the pod: the init
// container's rules as root, the sidecar under the uid inject gave it, its postStart hook, the kubelet's readiness
// probes of the sidecar and of the app (rewritten to the status port) from outside the pod, then the app (another
// uid) dialing a peer's address with no proxy settings, then the preStop hook and SIGTERM. Proves that what
// inject writes works together: token and root from the "Secret" directory, xDS over TLS, interception, hooks,
// probes.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { originalDstAvailable, originalDstProblem } from '../../src/listener/original-dst.js';
import { createPodPair, netnsUnavailable, waitForOutput, type PodPair } from '../helpers/netns.js';
import { MAIN, runPillion, type PillionProcess } from '../helpers/process.js';

const PROBE = fileURLToPath(new URL('../fixtures/netns-probe.mjs', import.meta.url));
const APP_UID = '1000';
const unavailable = netnsUnavailable() ?? (originalDstAvailable() ? undefined : `no native helper: ${originalDstProblem()}`);
if (unavailable) console.warn(`skipping the injected-pod test: ${unavailable}`);

interface Container {
  name: string;
  args: string[];
  securityContext: { runAsUser: number };
  lifecycle?: { postStart: { exec: { command: string[] } }; preStop: { exec: { command: string[] } } };
  readinessProbe?: { httpGet: { path: string; port: number } };
  env?: { name: string; value?: string }[];
}

const procs: PillionProcess[] = [];
const children: ChildProcess[] = [];
let pods: PodPair | undefined;
let dir: string | undefined;

afterAll(async () => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  for (const c of children) c.kill('SIGKILL');
  pods?.delete();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(unavailable !== undefined)('an injected pod, run as the kubelet would', () => {
  it('rules, sidecar held until ready, the app intercepted through it, then drain and exit', { timeout: 60_000 }, async () => {
    pods = createPodPair('pj');
    const { pod, peer, peerV4, podV4 } = pods;
    dir = mkdtempSync(join(tmpdir(), 'pillion-injected-pod-'));
    chmodSync(dir, 0o755);
    // The backend: a plain HTTP server on the peer, outside the mesh's sidecars (mTLS off for it).
    const backend = peer.spawn(process.execPath, [PROBE, 'http', 'backend=8080']);
    children.push(backend);
    await waitForOutput(backend, 'ready');
    // The app's own server, which its (rewritten) readiness probe asks.
    const app = pod.spawn(process.execPath, [PROBE, 'http', 'web=8080']);
    children.push(app);
    await waitForOutput(app, 'ready');
    writeFileSync(
      join(dir, 'mesh.yaml'),
      `services:
  - name: web
    serviceAccount: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: ${podV4}, port: 8080 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: ${peerV4}, port: 8080 }]
    policy: { mtls: DISABLE }
`,
    );
    // The control server inside the pod's namespace (its loopback): root, started before the rules.
    const control = runPillion(['control', '--config', join(dir, 'mesh.yaml'), '--port', '0', '--admin-port', '0', '--secure-port', '0', '--ca-dir', join(dir, 'ca')], MAIN, ['ip', 'netns', 'exec', pod.name]);
    procs.push(control);
    const secure = Number((await control.waitForLine((l) => l.msg === 'xds TLS and certificate service listening')).port);

    // The Secret pillion-token-web, as the kubelet would mount it.
    const secret = join(dir, 'secret');
    mkdirSync(secret, { mode: 0o755 });
    const token = spawnSync(process.execPath, [...NODE_FLAGS, MAIN, 'token', '--ca-dir', join(dir, 'ca'), '--namespace', 'default', '--service-account', 'web'], { encoding: 'utf8' });
    writeFileSync(join(secret, 'token'), token.stdout, { mode: 0o444 });
    copyFileSync(join(dir, 'ca', 'root-cert.pem'), join(secret, 'root-cert.pem'));
    chmodSync(join(secret, 'root-cert.pem'), 0o444);

    const deployment = yaml.dump({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web' },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        template: {
          metadata: { labels: { app: 'web' } },
          spec: { serviceAccountName: 'web', containers: [{ name: 'web', image: 'web:1', ports: [{ name: 'http', containerPort: 8080 }], readinessProbe: { httpGet: { path: '/healthz', port: 'http' } } }] },
        },
      },
    });
    const injected = spawnSync(process.execPath, [...NODE_FLAGS, MAIN, 'inject', '--quiet', '--control', `127.0.0.1:${secure}`], { input: deployment, encoding: 'utf8' });
    expect(injected.status, injected.stderr).toBe(0);
    const spec = (yaml.load(injected.stdout) as { spec: { template: { spec: { containers: Container[]; initContainers: Container[] } } } }).spec.template.spec;
    const sidecar = spec.containers.find((c) => c.name === 'pillion-proxy')!;
    const init = spec.initContainers.find((c) => c.name === 'pillion-init')!;
    // What the kubelet does: $(VAR) from the downward API, the Secret at its mountPath, `pillion` on the PATH.
    const expand = (a: string): string =>
      a.replaceAll('$(POD_NAMESPACE)', 'default').replaceAll('$(POD_NAME)', 'web-0').replaceAll('/var/run/pillion/bootstrap', secret);
    const pillion = (command: string[]): string[] => [process.execPath, ...NODE_FLAGS, MAIN, ...command.slice(1).map(expand)];
    const inPod = (argv: string[], uid?: number): ReturnType<typeof spawnSync> =>
      spawnSync('ip', ['netns', 'exec', pod.name, ...(uid === undefined ? [] : ['setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups']), ...argv], { encoding: 'utf8', timeout: 20_000 });
    // The kubelet's httpGet probe: from outside the pod (the peer stands in for the node) to the pod's address.
    const kubelet = (probe: { httpGet: { path: string; port: number } }): string =>
      String(spawnSync('ip', ['netns', 'exec', peer.name, process.execPath, PROBE, 'get', `http://${podV4}:${probe.httpGet.port}${probe.httpGet.path}`, '3000'], { encoding: 'utf8', timeout: 10_000 }).stdout);
    const appProbe = spec.containers.find((c) => c.name === 'web')!.readinessProbe!;
    expect(appProbe.httpGet).toMatchObject({ path: '/app-health/web/readyz', port: 15020 });

    // Init container: the rules, as root.
    const rules = inPod(pillion(['pillion', ...init.args]), init.securityContext.runAsUser);
    expect(rules.status, String(rules.stderr)).toBe(0);
    expect(String(rules.stdout)).toContain('iptables interception rules installed');

    // The sidecar under its uid, then its postStart: returns only once the sidecar is ready.
    const uid = sidecar.securityContext.runAsUser;
    // The kubelet sets the container's plain `value` env entries (PILLION_APP_PROBES); valueFrom ones are in `expand`.
    const env = Object.fromEntries((sidecar.env ?? []).filter((e) => e.value !== undefined).map((e) => [e.name, e.value!]));
    const proxy = runPillion(sidecar.args.map(expand), MAIN, ['ip', 'netns', 'exec', pod.name, 'setpriv', '--reuid', String(uid), '--regid', String(uid), '--clear-groups'], env);
    procs.push(proxy);
    const postStart = inPod(pillion(sidecar.lifecycle!.postStart.exec.command));
    expect(postStart.status, String(postStart.stderr)).toBe(0);
    // Its log lines may still be in the pipe: the hook returning is what matters, the lines confirm why.
    await proxy.waitForLine((l) => l.msg === 'proxy ready', 2_000);
    expect((await proxy.waitForLine((l) => l.msg === 'workload certificate issued', 2_000)).identity).toBe('spiffe://cluster.local/ns/default/sa/web');
    // Both readiness probes reach the status port past the rules; the app's is answered by asking the app.
    expect(kubelet(sidecar.readinessProbe!)).toMatch(/^200 /);
    expect(kubelet(appProbe)).toMatch(/^200 /);

    // The app, under its own uid, dials the backend's address: no proxy settings.
    const get = inPod([process.execPath, PROBE, 'get', `http://${peerV4}:8080/`, '5000'], Number(APP_UID));
    expect(String(get.stdout)).toMatch(/^200 /);
    const logged = await proxy.waitForLine((l) => l.upstream_cluster === 'backend.default:8080');
    expect(logged.status).toBe(200);

    // preStop: drain; readiness fails from then on; SIGTERM exits.
    const preStop = inPod(pillion(sidecar.lifecycle!.preStop.exec.command));
    expect(preStop.status, String(preStop.stderr)).toBe(0);
    expect(kubelet(sidecar.readinessProbe!)).toMatch(/^5\d\d /);
    proxy.child.kill('SIGTERM');
    expect(await proxy.exited).toBe(0);
  });
});
