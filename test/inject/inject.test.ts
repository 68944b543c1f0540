// `pillion inject`, run as the real executable over manifests: what it adds to each kind of workload, what it
// leaves alone, idempotence, and the result validated against the Kubernetes schema.
import { spawnSync } from 'node:child_process';
import yaml from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { rewriteAppProbes } from '../../src/inject/app-probes.js';
import { MAIN } from '../helpers/process.js';
import { schemaProblems } from '../helpers/k8s-schema.js';

interface Container {
  name: string;
  args?: string[];
  restartPolicy?: string;
  securityContext?: { runAsUser?: number; runAsNonRoot?: boolean; capabilities?: { add?: string[]; drop?: string[] } };
  lifecycle?: { postStart?: { exec: { command: string[] } }; preStop?: { exec: { command: string[] } } };
  readinessProbe?: Record<string, unknown>;
  livenessProbe?: Record<string, unknown>;
  startupProbe?: Record<string, unknown>;
  env?: { name: string; value?: string }[];
  ports?: { name?: string; containerPort: number; protocol?: string }[];
  volumeMounts?: { name: string }[];
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; secret?: { secretName: string } }[];
}

function inject(input: string, ...args: string[]): { out: string; err: string; status: number | null } {
  const r = spawnSync(process.execPath, [...NODE_FLAGS, MAIN, 'inject', ...args], { input, encoding: 'utf8', timeout: 15_000 });
  return { out: r.stdout, err: r.stderr, status: r.status };
}

const deployment = (name: string, extra: { annotations?: Record<string, string>; spec?: Record<string, unknown> } = {}): string =>
  yaml.dump({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name },
    spec: {
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name }, ...(extra.annotations ? { annotations: extra.annotations } : {}) },
        spec: { serviceAccountName: name, containers: [{ name, image: `${name}:1`, ports: [{ containerPort: 8080 }] }], ...extra.spec },
      },
    },
  });

const SERVICE = `# the Service keeps its comment
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, name: http}]
`;

function docs(text: string): Record<string, unknown>[] {
  return yaml.loadAll(text) as Record<string, unknown>[];
}
const podSpecOf = (d: Record<string, unknown>): PodSpec => (d as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
const arg = (c: Container, flag: string): string | undefined => {
  const i = c.args?.indexOf(flag) ?? -1;
  return i < 0 ? undefined : c.args![i + 1];
};

describe('pillion inject', () => {
  it('adds the rules, the sidecar first, held until ready, with its own uid, and leaves other kinds as they were', () => {
    const r = inject(`${SERVICE}---\n${deployment('web')}`, '--image', 'reg.example/pillion:9', '--control', 'a:15012,b:15012', '--exclude-outbound-ports', '5432', '--exclude-cidrs', '169.254.169.254/32');
    expect(r.status, r.err).toBe(0);
    expect(r.out.startsWith(SERVICE)).toBe(true);
    const [, dep] = docs(r.out);
    const spec = podSpecOf(dep!);
    const [proxy, app] = spec.containers;
    expect(proxy!.name).toBe('pillion-proxy');
    expect(app!.name).toBe('web');
    expect(proxy!.args).toEqual(expect.arrayContaining(['proxy', '--interception', 'redirect', '--xds-ca', '--token']));
    expect(arg(proxy!, '--xds')).toBe('a:15012,b:15012');
    expect(arg(proxy!, '--service')).toBe('web');
    expect(arg(proxy!, '--service-account')).toBe('web');
    expect(arg(proxy!, '--app-port')).toBe('8080');
    expect(proxy!.securityContext).toMatchObject({ runAsUser: 1337, runAsNonRoot: true, capabilities: { drop: ['ALL'] } });
    expect(proxy!.lifecycle!.postStart!.exec.command.slice(0, 2)).toEqual(['pillion', 'wait-ready']);
    expect(proxy!.lifecycle!.preStop!.exec.command.slice(0, 2)).toEqual(['pillion', 'drain']);
    // Readiness from the kubelet over HTTP to the status port: no Node process started in the container per probe.
    expect(proxy!.readinessProbe).toEqual({ httpGet: { path: '/healthz/ready', port: 15020 }, periodSeconds: 5, timeoutSeconds: 4, failureThreshold: 3 });
    expect(arg(proxy!, '--status-port')).toBe('15020');
    expect(proxy!.ports).toContainEqual({ name: 'pillion-status', containerPort: 15020, protocol: 'TCP' });
    const [init] = spec.initContainers!;
    expect(init!.name).toBe('pillion-init');
    expect(init!.args!.slice(0, 4)).toEqual(['iptables', '--apply', '--proxy-uid', '1337']);
    expect(arg(init!, '--exclude-inbound-ports')).toBe('15020');
    expect(arg(init!, '--exclude-outbound-ports')).toBe('5432');
    expect(arg(init!, '--exclude-cidrs')).toBe('169.254.169.254/32');
    expect(init!.securityContext).toMatchObject({ runAsUser: 0, runAsNonRoot: false, capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] } });
    // Root and capabilities only for the rules: the app is untouched.
    expect(app!.securityContext).toBeUndefined();
    expect(spec.volumes).toEqual([expect.objectContaining({ name: 'pillion-bootstrap', secret: expect.objectContaining({ secretName: 'pillion-token-web' }) })]);
    expect(proxy!.volumeMounts).toEqual([expect.objectContaining({ name: 'pillion-bootstrap' })]);
    expect(schemaProblems(r.out)).toEqual([]);
    expect(r.err).toContain('document 2 (Deployment web): injected sidecar for service web');
  });

  it('is idempotent: injecting its own output changes nothing', () => {
    const once = inject(`${SERVICE}---\n${deployment('web')}---\n${deployment('api')}`);
    expect(once.status, once.err).toBe(0);
    const twice = inject(once.out);
    expect(twice.status, twice.err).toBe(0);
    expect(twice.out).toBe(once.out);
    expect(twice.err).toContain('already injected, unchanged');
  });

  it('honours the opt-out annotation and keeps the document byte for byte', () => {
    const input = deployment('batch', { annotations: { 'pillion.io/inject': 'false' } });
    const r = inject(input);
    expect(r.status, r.err).toBe(0);
    expect(r.out).toBe(input);
    expect(r.err).toContain('pillion.io/inject: "false", unchanged');
  });

  it('gives run-to-completion pods (Job) a native sidecar, so the Job completes', () => {
    const job = yaml.dump({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'migrate' },
      spec: { template: { metadata: { labels: { app: 'migrate' } }, spec: { restartPolicy: 'Never', initContainers: [{ name: 'wait', image: 'busybox' }], containers: [{ name: 'migrate', image: 'm:1' }] } } },
    });
    const r = inject(job);
    expect(r.status, r.err).toBe(0);
    const spec = (docs(r.out)[0] as { spec: { template: { spec: PodSpec } } }).spec.template.spec;
    expect(spec.containers.map((c) => c.name)).toEqual(['migrate']);
    // Rules, then the sidecar (restartPolicy Always = a native sidecar), then the app's own init containers.
    expect(spec.initContainers!.map((c) => c.name)).toEqual(['pillion-init', 'pillion-proxy', 'wait']);
    expect(spec.initContainers![1]!.restartPolicy).toBe('Always');
    expect(arg(spec.initContainers![1]!, '--app-port')).toBeUndefined();
    expect(schemaProblems(r.out)).toEqual([]);
  });

  it('injects a CronJob\'s job template and the items of a kind: List', () => {
    const cron = { apiVersion: 'batch/v1', kind: 'CronJob', metadata: { name: 'report' }, spec: { schedule: '0 * * * *', jobTemplate: { spec: { template: { metadata: { labels: { app: 'report' } }, spec: { restartPolicy: 'OnFailure', containers: [{ name: 'report', image: 'r:1' }] } } } } } };
    const list = { apiVersion: 'v1', kind: 'List', items: [yaml.load(deployment('web')), { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'b' } }] };
    const r = inject([cron, list].map((d) => yaml.dump(d)).join('---\n'));
    expect(r.status, r.err).toBe(0);
    const [c, l] = docs(r.out) as [{ spec: { jobTemplate: { spec: { template: { spec: PodSpec } } } } }, { items: Record<string, unknown>[] }];
    const cronSpec = c.spec.jobTemplate.spec.template.spec;
    expect(cronSpec.initContainers!.map((x) => [x.name, x.restartPolicy])).toEqual([['pillion-init', undefined], ['pillion-proxy', 'Always']]);
    expect(podSpecOf(l.items[0]!).containers.map((x) => x.name)).toEqual(['pillion-proxy', 'web']);
    expect(l.items[1]).toEqual({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: 'b' } });
    expect(r.err).toContain('item 1');
  });

  it('puts the rules after the app\'s own init containers for a classic sidecar, and injects Pods, StatefulSets, DaemonSets', () => {
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', labels: { app: 'p' } }, spec: { initContainers: [{ name: 'setup', image: 's' }], containers: [{ name: 'p', image: 'p:1' }] } };
    const sts = { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'db' }, spec: { serviceName: 'db', selector: { matchLabels: { app: 'db' } }, template: { metadata: { labels: { app: 'db' } }, spec: { containers: [{ name: 'db', image: 'db:1', ports: [{ containerPort: 5432 }] }] } } } };
    const ds = { apiVersion: 'apps/v1', kind: 'DaemonSet', metadata: { name: 'agent' }, spec: { selector: { matchLabels: { app: 'agent' } }, template: { metadata: { labels: { app: 'agent' }, annotations: { 'pillion.io/service': 'node-agent', 'pillion.io/exclude-inbound-ports': '9100' } }, spec: { containers: [{ name: 'agent', image: 'a:1' }] } } } };
    const r = inject([pod, sts, ds].map((d) => yaml.dump(d)).join('---\n'));
    expect(r.status, r.err).toBe(0);
    const [p, s, d] = docs(r.out) as [{ spec: PodSpec }, Record<string, unknown>, Record<string, unknown>];
    expect(p.spec.initContainers!.map((c) => c.name)).toEqual(['setup', 'pillion-init']);
    expect(p.spec.containers.map((c) => c.name)).toEqual(['pillion-proxy', 'p']);
    expect(arg(podSpecOf(s).containers[0]!, '--app-port')).toBe('5432');
    expect(arg(podSpecOf(s).containers[0]!, '--service-account')).toBe('default');
    expect(arg(podSpecOf(d).containers[0]!, '--service')).toBe('node-agent');
    expect(arg(podSpecOf(d).initContainers![0]!, '--exclude-inbound-ports')).toBe('9100,15020');
    expect(schemaProblems(r.out)).toEqual([]);
  });

  it('refuses an app that runs as the proxy uid, naming the document (its traffic would bypass the sidecar)', () => {
    const r = inject(deployment('web', { spec: { securityContext: { runAsUser: 1337 } } }));
    expect(r.status).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain('stdin document 1 (Deployment web): a container runs as uid 1337');
  });

  it('refuses an app port the sidecar binds (the pod shares one network namespace: one of the two could not start)', () => {
    const onStatus = inject(deployment('web', { spec: { containers: [{ name: 'web', image: 'web:1', ports: [{ containerPort: 8080 }] }, { name: 'metrics', image: 'm:1', ports: [{ containerPort: 15020 }] }] } }));
    expect(onStatus.status).toBe(2);
    expect(onStatus.out).toBe('');
    expect(onStatus.err).toContain("stdin document 1 (Deployment web): containers[metrics] declares containerPort 15020, the sidecar's status port");
    const annotated = inject(deployment('web', { annotations: { 'pillion.io/app-port': '15001' } }));
    expect(annotated.status).toBe(2);
    expect(annotated.err).toContain("app port 15001 is the sidecar's outbound listener port");
    expect(inject(deployment('web')).status).toBe(0);
  });

  it('refuses bad flags and annotations with the reason', () => {
    expect(inject('', '--proxy-uid', '0').err).toContain('--proxy-uid');
    expect(inject('', '--control', 'nohost').err).toContain('--control: expected HOST:PORT');
    const broken = inject('kind: Service\n---\nkind: [unclosed\n');
    expect(broken.status).toBe(2);
    expect(broken.err).toContain('stdin document 2: not valid YAML');
    const crlf = inject(`${SERVICE}---\n${deployment('web')}`.replaceAll('\n', '\r\n'));
    expect(crlf.status, crlf.err).toBe(0);
    expect(crlf.err).toContain('document 2 (Deployment web): injected');
    const bad = inject(deployment('web', { annotations: { 'pillion.io/exclude-cidrs': 'not-a-cidr' } }));
    expect(bad.status).toBe(2);
    expect(bad.err).toContain('document 1 (Deployment web)');
  });

  it('refuses a YAML alias bomb at once instead of expanding it while writing it out', () => {
    // 9^10 strings once expanded; written out, it ran the process out of string length after seconds of work.
    const levels = ['        a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]'];
    for (let i = 1; i < 10; i++) levels.push(`        a${i}: &a${i} [${Array(9).fill(`*a${i - 1}`).join(', ')}]`);
    const bomb = ['apiVersion: apps/v1', 'kind: Deployment', 'metadata: {name: web}', 'spec:', '  template:', '    metadata:', '      annotations:', ...levels, '    spec:', '      containers: [{name: web, image: web}]', ''].join('\n');
    const r = inject(bomb);
    expect(r.status).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain('stdin document 1: YAML aliases expand the file to more than');
  });

  it('refuses more than 64 MiB of input instead of buffering a stream that does not end', () => {
    const r = spawnSync(process.execPath, [...NODE_FLAGS, MAIN, 'inject'], { input: Buffer.alloc((64 << 20) + 1, 0x20), encoding: 'utf8', timeout: 15_000 });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('stdin: more than 64 MiB of input; not read further');
  });
});

/** A Deployment `web` whose pod template has exactly these containers and annotations. */
const withContainers = (containers: Record<string, unknown>[], annotations?: Record<string, string>): string =>
  yaml.dump({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web' },
    spec: { selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' }, ...(annotations ? { annotations } : {}) }, spec: { containers } } },
  });
const proxyOf = (spec: PodSpec): Container => spec.containers.find((c) => c.name === 'pillion-proxy') ?? spec.initContainers!.find((c) => c.name === 'pillion-proxy')!;
const appOf = (spec: PodSpec, name: string): Container => spec.containers.find((c) => c.name === name)!;
/** PILLION_APP_PROBES of the sidecar, parsed; undefined when inject set none. */
const appProbesEnv = (spec: PodSpec): unknown => {
  const v = proxyOf(spec).env?.find((e) => e.name === 'PILLION_APP_PROBES')?.value;
  return v === undefined ? undefined : JSON.parse(v);
};
const statusProbe = (path: string): { httpGet: { path: string; port: number; scheme: string } } => ({ httpGet: { path, port: 15020, scheme: 'HTTP' } });

describe('pillion inject: app probes to the sidecar\'s status port', () => {
  it('rewrites httpGet and tcpSocket probes to /app-health/<container>/*, keeping every other field, and hands the originals to the sidecar', () => {
    const web = {
      name: 'web',
      image: 'web:1',
      ports: [{ name: 'http', containerPort: 8080 }, { name: 'admin', containerPort: 9090 }],
      livenessProbe: { httpGet: { path: '/live', port: 8080, scheme: 'HTTPS', host: 'localhost', httpHeaders: [{ name: 'X-Probe', value: 'kubelet' }] }, initialDelaySeconds: 3, periodSeconds: 10, failureThreshold: 4, terminationGracePeriodSeconds: 7 },
      readinessProbe: { tcpSocket: { port: 9090 }, timeoutSeconds: 3, successThreshold: 2 },
      // A named port, resolved from this container's ports; no path: the kubelet asks for "/".
      startupProbe: { httpGet: { port: 'admin' }, periodSeconds: 2, failureThreshold: 30 },
    };
    const worker = { name: 'worker', image: 'w:1', livenessProbe: { tcpSocket: { port: 7000, host: '127.0.0.1' } } };
    const r = inject(withContainers([web, worker]));
    expect(r.status, r.err).toBe(0);
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(appOf(spec, 'web')).toEqual({
      ...web,
      livenessProbe: { ...statusProbe('/app-health/web/livez'), initialDelaySeconds: 3, periodSeconds: 10, failureThreshold: 4, terminationGracePeriodSeconds: 7 },
      readinessProbe: { ...statusProbe('/app-health/web/readyz'), timeoutSeconds: 3, successThreshold: 2 },
      startupProbe: { ...statusProbe('/app-health/web/startupz'), periodSeconds: 2, failureThreshold: 30 },
    });
    expect(appOf(spec, 'worker')).toEqual({ ...worker, livenessProbe: statusProbe('/app-health/worker/livez') });
    expect(appProbesEnv(spec)).toEqual({
      '/app-health/web/livez': { httpGet: { path: '/live', port: 8080, scheme: 'HTTPS', host: 'localhost', httpHeaders: [{ name: 'X-Probe', value: 'kubelet' }] }, timeoutSeconds: 1 },
      '/app-health/web/readyz': { tcpSocket: { port: 9090 }, timeoutSeconds: 3 },
      '/app-health/web/startupz': { httpGet: { path: '/', port: 9090 }, timeoutSeconds: 1 },
      '/app-health/worker/livez': { tcpSocket: { port: 7000, host: '127.0.0.1' }, timeoutSeconds: 1 },
    });
    expect(schemaProblems(r.out)).toEqual([]);
    expect(r.err).toContain('4 app probes rewritten to status port 15020');
  });

  it('leaves a probe whose named port the container does not declare, and warns naming it (even with --quiet)', () => {
    const web = { name: 'web', image: 'web:1', ports: [{ name: 'http', containerPort: 8080 }], livenessProbe: { httpGet: { path: '/live', port: 'htp' } }, readinessProbe: { httpGet: { path: '/ready', port: 'http' } } };
    const r = inject(withContainers([web]), '--quiet');
    expect(r.status, r.err).toBe(0);
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(appOf(spec, 'web').livenessProbe).toEqual({ httpGet: { path: '/live', port: 'htp' } });
    expect(appOf(spec, 'web').readinessProbe).toEqual(statusProbe('/app-health/web/readyz'));
    expect(appProbesEnv(spec)).toEqual({ '/app-health/web/readyz': { httpGet: { path: '/ready', port: 8080 }, timeoutSeconds: 1 } });
    expect(r.err.trim().split('\n')).toEqual([
      'pillion inject: stdin document 1 (Deployment web): warning: containers[web].livenessProbe: port "htp" is not a named port of the container: probe not rewritten to the sidecar\'s status port (the kubelet\'s request goes to the inbound listener and is refused under STRICT mTLS)',
    ]);
  });

  it('leaves a probe the sidecar would refuse to run, and warns naming why, so the sidecar still starts', () => {
    const web = {
      name: 'web',
      image: 'web:1',
      // Valid for the API server, refused by PILLION_APP_PROBES: a space in the path, a timeout past an hour.
      livenessProbe: { httpGet: { path: '/live now', port: 8080 } },
      readinessProbe: { tcpSocket: { port: 8080 }, timeoutSeconds: 7200 },
      startupProbe: { httpGet: { path: '/started', port: 8080 } },
    };
    const r = inject(withContainers([web]), '--quiet');
    expect(r.status, r.err).toBe(0);
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(appOf(spec, 'web').livenessProbe).toEqual(web.livenessProbe);
    expect(appOf(spec, 'web').readinessProbe).toEqual(web.readinessProbe);
    expect(appOf(spec, 'web').startupProbe).toEqual(statusProbe('/app-health/web/startupz'));
    expect(appProbesEnv(spec)).toEqual({ '/app-health/web/startupz': { httpGet: { path: '/started', port: 8080 }, timeoutSeconds: 1 } });
    const warnings = r.err.trim().split('\n');
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^pillion inject: stdin document 1 \(Deployment web\): warning: containers\[web\]\.livenessProbe: probe not rewritten .*httpGet\.path: expected a path/);
    expect(warnings[1]).toMatch(/containers\[web\]\.readinessProbe: probe not rewritten .*timeoutSeconds: expected a whole number 0-3600, got 7200/);
  });

  it('gives a path without a leading / one, as the kubelet does when it asks', () => {
    const web = { name: 'web', image: 'web:1', readinessProbe: { httpGet: { path: 'ready?full=1', port: 8080 } } };
    const r = inject(withContainers([web]), '--quiet');
    expect(r.status, r.err).toBe(0);
    expect(r.err).toBe('');
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(appOf(spec, 'web').readinessProbe).toEqual(statusProbe('/app-health/web/readyz'));
    expect(appProbesEnv(spec)).toEqual({ '/app-health/web/readyz': { httpGet: { path: '/ready?full=1', port: 8080 }, timeoutSeconds: 1 } });
  });

  it('rewrites no more probes than the sidecar takes (64), warning for the rest', () => {
    const containers = Array.from({ length: 22 }, (_, i) => ({
      name: `c${i}`,
      image: 'app:1',
      livenessProbe: { tcpSocket: { port: 8000 + i } },
      readinessProbe: { tcpSocket: { port: 8000 + i } },
      startupProbe: { tcpSocket: { port: 8000 + i } },
    }));
    const r = inject(withContainers(containers), '--quiet');
    expect(r.status, r.err).toBe(0);
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(Object.keys(appProbesEnv(spec) as object)).toHaveLength(64);
    expect(appOf(spec, 'c21').livenessProbe).toEqual(statusProbe('/app-health/c21/livez'));
    expect(appOf(spec, 'c21').readinessProbe).toEqual({ tcpSocket: { port: 8021 } });
    const warnings = r.err.trim().split('\n');
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain('containers[c21].readinessProbe: probe not rewritten to the sidecar\'s status port, which could not run it: PILLION_APP_PROBES: 65 probes, more than 64');
  });

  it('rewrites grpc probes, keeping their service, and reads the service only when given', () => {
    const web = {
      name: 'web',
      image: 'web:1',
      readinessProbe: { grpc: { port: 9000, service: 'ready' }, periodSeconds: 3, timeoutSeconds: 2 },
      livenessProbe: { grpc: { port: 9000 } },
    };
    const r = inject(withContainers([web]));
    expect(r.status, r.err).toBe(0);
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(appOf(spec, 'web').readinessProbe).toEqual({ ...statusProbe('/app-health/web/readyz'), periodSeconds: 3, timeoutSeconds: 2 });
    expect(appOf(spec, 'web').livenessProbe).toEqual(statusProbe('/app-health/web/livez'));
    expect(appProbesEnv(spec)).toEqual({
      '/app-health/web/readyz': { grpc: { port: 9000, service: 'ready' }, timeoutSeconds: 2 },
      '/app-health/web/livez': { grpc: { port: 9000 }, timeoutSeconds: 1 },
    });
  });

  it('leaves exec probes, and probes of ports excluded from interception (flag or annotation)', () => {
    const web = {
      name: 'web',
      image: 'web:1',
      livenessProbe: { exec: { command: ['cat', '/tmp/healthy'] }, periodSeconds: 5 },
      readinessProbe: { grpc: { port: 9100 } },
      startupProbe: { httpGet: { path: '/started', port: 9100 } },
    };
    const metrics = { name: 'metrics', image: 'm:1', readinessProbe: { tcpSocket: { port: 9200 } } };
    const r = inject(withContainers([web, metrics], { 'pillion.io/exclude-inbound-ports': '9100' }), '--exclude-inbound-ports', '9200');
    expect(r.status, r.err).toBe(0);
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(appOf(spec, 'web')).toEqual(web);
    expect(appOf(spec, 'metrics')).toEqual(metrics);
    expect(appProbesEnv(spec)).toBeUndefined();
    expect(arg(spec.initContainers![0]!, '--exclude-inbound-ports')).toBe('9200,9100,15020');
    expect(r.err).toContain('0 app probes rewritten');
  });

  it('pillion.io/rewrite-app-probes: "false" leaves the app\'s probes; the sidecar keeps its status port and readiness', () => {
    const web = { name: 'web', image: 'web:1', readinessProbe: { httpGet: { path: '/ready', port: 8080 } } };
    const r = inject(withContainers([web], { 'pillion.io/rewrite-app-probes': 'false' }));
    expect(r.status, r.err).toBe(0);
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(appOf(spec, 'web')).toEqual(web);
    expect(appProbesEnv(spec)).toBeUndefined();
    expect(arg(proxyOf(spec), '--status-port')).toBe('15020');
    expect(proxyOf(spec).readinessProbe).toMatchObject({ httpGet: { path: '/healthz/ready', port: 15020 } });
    expect(r.err).toContain('app probes not rewritten (pillion.io/rewrite-app-probes: "false")');
    const bad = inject(withContainers([web], { 'pillion.io/rewrite-app-probes': 'no' }));
    expect(bad.status).toBe(2);
    expect(bad.err).toContain('document 1 (Deployment web): pillion.io/rewrite-app-probes: expected "true" or "false", got "no"');
  });

  it('rewrites a Job\'s app probes with the native sidecar carrying the originals', () => {
    const job = yaml.dump({
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: { name: 'migrate' },
      spec: { template: { metadata: { labels: { app: 'migrate' } }, spec: { restartPolicy: 'Never', containers: [{ name: 'migrate', image: 'm:1', livenessProbe: { tcpSocket: { port: 5000 } } }] } } },
    });
    const r = inject(job);
    expect(r.status, r.err).toBe(0);
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(appOf(spec, 'migrate').livenessProbe).toEqual(statusProbe('/app-health/migrate/livez'));
    expect(appProbesEnv(spec)).toEqual({ '/app-health/migrate/livez': { tcpSocket: { port: 5000 }, timeoutSeconds: 1 } });
    expect(schemaProblems(r.out)).toEqual([]);
  });

  it('is idempotent with rewritten probes, and never rewrites a probe already on the status port', () => {
    const web = { name: 'web', image: 'web:1', ports: [{ name: 'http', containerPort: 8080 }], readinessProbe: { httpGet: { path: '/ready', port: 'http' } } };
    const once = inject(withContainers([web]));
    expect(once.status, once.err).toBe(0);
    expect(appOf(podSpecOf(docs(once.out)[0]!), 'web').readinessProbe).toEqual(statusProbe('/app-health/web/readyz'));
    const twice = inject(once.out);
    expect(twice.out).toBe(once.out);
    // A template already pointing at the status port (e.g. the sidecar taken out by hand): left as it is, not
    // rewritten into a probe of itself.
    const already = { name: 'web', image: 'web:1', readinessProbe: statusProbe('/app-health/web/readyz') };
    const r = inject(withContainers([already]));
    expect(r.status, r.err).toBe(0);
    const spec = podSpecOf(docs(r.out)[0]!);
    expect(appOf(spec, 'web')).toEqual(already);
    expect(appProbesEnv(spec)).toBeUndefined();
  });

  it('excludes the status port from interception exactly once, whatever the operator excluded', () => {
    const r = inject(withContainers([{ name: 'web', image: 'web:1' }], { 'pillion.io/exclude-inbound-ports': '15020,9100' }), '--exclude-inbound-ports', '15020');
    expect(r.status, r.err).toBe(0);
    const init = podSpecOf(docs(r.out)[0]!).initContainers![0]!;
    expect(arg(init, '--exclude-inbound-ports')!.split(',').sort()).toEqual(['15020', '9100']);
  });

  it('never changes its input (the rewrite builds new containers)', () => {
    const deepFreeze = <T>(o: T): T => {
      if (typeof o === 'object' && o !== null) for (const v of Object.values(o)) deepFreeze(v);
      return Object.freeze(o);
    };
    const containers = deepFreeze([{ name: 'web', ports: [{ name: 'http', containerPort: 8080 }], livenessProbe: { httpGet: { path: '/l', port: 'http' } }, readinessProbe: { tcpSocket: { port: 8080 } } }]);
    const before = JSON.stringify(containers);
    const r = rewriteAppProbes(containers, []);
    expect(JSON.stringify(containers)).toBe(before);
    expect(r.containers[0]!.livenessProbe).toEqual(statusProbe('/app-health/web/livez'));
  });
});
