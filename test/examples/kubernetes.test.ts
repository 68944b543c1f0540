// examples/kubernetes: every manifest validates against the Kubernetes schema, the injected demo is exactly what
// `pillion inject` makes of the plain one today, the mesh config in the ConfigMap is valid and names the demo's
// Services, and the commands the containers run parse with the flags our CLI takes.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import yaml from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { parseControlArgs } from '../../src/cli/control-command.js';
import { parseProxyArgs } from '../../src/bootstrap/args.js';
import { parseIptablesArgs } from '../../src/cli/iptables-command.js';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { MAIN } from '../helpers/process.js';
import { schemaProblems } from '../helpers/k8s-schema.js';

const DIR = fileURLToPath(new URL('../../examples/kubernetes/', import.meta.url));
const read = (file: string): string => readFileSync(`${DIR}${file}`, 'utf8');
/** How demo-app.injected.yaml is made (README.md there says the same). */
const INJECT_ARGS = ['inject', '-f', 'demo-app.yaml', '--control', 'pillion-control.pillion-system.svc:15012', '--quiet'];

interface Container {
  name: string;
  command?: string[];
  args?: string[];
  volumeMounts?: { name: string; mountPath: string }[];
}
type Doc = { kind: string; metadata: { name: string; namespace?: string }; spec: Record<string, unknown>; data?: Record<string, string> };
const docs = (file: string): Doc[] => yaml.loadAll(read(file)) as Doc[];
const podSpec = (d: Doc): { containers: Container[]; initContainers?: Container[]; serviceAccountName?: string } =>
  (d.spec.template as { spec: ReturnType<typeof podSpec> }).spec;

describe('examples/kubernetes', () => {
  it('every manifest validates against the Kubernetes schema', () => {
    const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml'));
    expect(files).toEqual(expect.arrayContaining(['control-plane.yaml', 'demo-app.yaml', 'demo-app.injected.yaml']));
    for (const file of files) expect(schemaProblems(read(file)), file).toEqual([]);
  });

  it('demo-app.injected.yaml is what pillion inject makes of demo-app.yaml now', () => {
    const r = spawnSync(process.execPath, [...NODE_FLAGS, MAIN, ...INJECT_ARGS], { cwd: DIR, encoding: 'utf8', timeout: 15_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout, `regenerate: cd examples/kubernetes && pillion ${INJECT_ARGS.join(' ')} > demo-app.injected.yaml`).toBe(read('demo-app.injected.yaml'));
  });

  it('the ConfigMap holds a valid mesh config naming each demo Service, its namespace and service account', () => {
    const configMap = docs('control-plane.yaml').find((d) => d.kind === 'ConfigMap')!;
    const mesh = parseMeshConfig(configMap.data!['mesh.yaml']!, 'pillion-mesh/mesh.yaml');
    const demo = docs('demo-app.yaml');
    for (const svc of demo.filter((d) => d.kind === 'Service')) {
      const meshService = mesh.services.find((s) => s.name === svc.metadata.name);
      expect(meshService, svc.metadata.name).toBeDefined();
      expect(meshService!.namespace).toBe(svc.metadata.namespace);
      const deployment = demo.find((d) => d.kind === 'Deployment' && d.metadata.name === svc.metadata.name)!;
      expect(meshService!.serviceAccount).toBe(podSpec(deployment).serviceAccountName);
    }
  });

  it('the control server runs two replicas whose flags parse, with the CA from a Secret and the Service name in its certificate', () => {
    const control = docs('control-plane.yaml').find((d) => d.kind === 'Deployment')!;
    expect(control.spec.replicas).toBe(2);
    const [c] = podSpec(control).containers;
    expect(c!.args![0]).toBe('control');
    const args = parseControlArgs(c!.args!.slice(1));
    const volumes = (control.spec.template as { spec: { volumes: { name: string; secret?: { secretName: string } }[] } }).spec.volumes;
    const mounts = c!.volumeMounts!;
    const caVolume = volumes.find((v) => v.secret?.secretName === 'pillion-ca')!;
    expect(mounts.find((m) => m.name === caVolume.name)!.mountPath).toBe(args === 'help' ? '' : args.ca!.dir);
    expect(args).toMatchObject({ host: '0.0.0.0', port: 15010, adminPort: 15014, ca: { securePort: 15012, serverNames: expect.arrayContaining(['pillion-control.pillion-system.svc']) } });
    const ports = (docs('control-plane.yaml').find((d) => d.kind === 'Service')!.spec.ports as { port: number }[]).map((p) => p.port);
    expect(ports).toEqual([15010, 15012, 15014]);
  });

  it('the injected sidecar and init container run commands our CLI accepts', () => {
    for (const d of docs('demo-app.injected.yaml').filter((x) => x.kind === 'Deployment')) {
      const spec = podSpec(d);
      const sidecar = spec.containers.find((c) => c.name === 'pillion-proxy')!;
      // The kubelet expands $(POD_NAMESPACE) and $(POD_NAME) from the downward API.
      const boot = parseProxyArgs(sidecar.args!.slice(1).map((a) => a.replaceAll('$(POD_NAMESPACE)', 'pillion-demo').replaceAll('$(POD_NAME)', `${d.metadata.name}-0`)));
      expect(boot.node).toMatchObject({ service: d.metadata.name, namespace: 'pillion-demo', interception: 'REDIRECT', appPort: 8080, workloadIdentity: true });
      expect(boot.xds).toEqual(['pillion-control.pillion-system.svc:15012']);
      const init = spec.initContainers!.find((c) => c.name === 'pillion-init')!;
      expect(parseIptablesArgs(init.args!.slice(1))).toMatchObject({ mode: 'apply', options: { proxyUid: 1337, inboundPort: 15006, outboundPort: 15001, excludeInboundPorts: [15020] } });
    }
  });
});
