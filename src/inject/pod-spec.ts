// What `pillion inject` adds to one pod spec: the iptables init container, the sidecar, their volume, as
// `istioctl kube-inject` does. Pure: plain objects in, a new pod spec out (the input is never mutated).
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IVolume } from 'kubernetes-models/v1/Volume';
import { APP_PROBES_ENV } from '../admin/app-probes.js';
import type { AppProbe } from './app-probes.js';

export const SIDECAR_NAME = 'pillion-proxy';
export const INIT_NAME = 'pillion-init';
const BOOTSTRAP_VOLUME = 'pillion-bootstrap';
const BOOTSTRAP_DIR = '/var/run/pillion/bootstrap';
export const ADMIN_PORT = 15000;
export const INBOUND_PORT = 15006;
export const OUTBOUND_PORT = 15001;
/** The sidecar's status port: its readiness and the app's rewritten kubelet probes; excluded from interception. */
export const STATUS_PORT = 15020;
/** preStop: time for the endpoints controller to take the pod out of Services before the sidecar stops accepting. */
const DRAIN_DELAY = '5s';
/** postStart: how long the app is held for the sidecar's first config before the pod start fails (and restarts). */
const HOLD_TIMEOUT = '120s';

export interface SidecarSettings {
  readonly image: string;
  /** --xds of the sidecar: the control servers' TLS ports, tried in order. */
  readonly control: readonly string[];
  readonly proxyUid: number;
  readonly excludeInboundPorts: readonly number[];
  readonly excludeOutboundPorts: readonly number[];
  readonly excludeCidrs: readonly string[];
}

/** What inject decided for one workload, from its annotations, labels and containers. */
export interface Workload {
  readonly service: string;
  readonly serviceAccount: string;
  readonly appPort?: number;
  /** The Secret holding `token` (a `pillion token` for the service account) and `root-cert.pem` (the mesh root). */
  readonly bootstrapSecret: string;
  /** Run-to-completion pods (Job, restartPolicy Never/OnFailure) get a native sidecar, which exits with the app. */
  readonly nativeSidecar: boolean;
  /** The app probes rewritten to the status port (see app-probes.ts), for the sidecar to run; none when empty. */
  readonly appProbes: Readonly<Record<string, AppProbe>>;
}

const list = (flag: string, values: readonly (string | number)[]): string[] => (values.length === 0 ? [] : [flag, values.join(',')]);

function initContainer(s: SidecarSettings): IContainer {
  return {
    name: INIT_NAME,
    image: s.image,
    command: ['pillion'],
    args: [
      'iptables', '--apply', '--proxy-uid', String(s.proxyUid),
      '--inbound-port', String(INBOUND_PORT), '--outbound-port', String(OUTBOUND_PORT),
      // The kubelet's probes of the status port must reach it, not the inbound listener.
      ...list('--exclude-inbound-ports', [...new Set([...s.excludeInboundPorts, STATUS_PORT])]),
      ...list('--exclude-outbound-ports', s.excludeOutboundPorts),
      ...list('--exclude-cidrs', s.excludeCidrs),
    ],
    resources: { requests: { cpu: '10m', memory: '32Mi' }, limits: { cpu: '100m', memory: '64Mi' } },
    // The only root in the pod, and only with the two capabilities iptables-restore needs in the pod's namespace.
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
  };
}

function sidecar(s: SidecarSettings, w: Workload): IContainer {
  const exec = (...args: string[]): { exec: { command: string[] } } => ({ exec: { command: ['pillion', ...args] } });
  return {
    name: SIDECAR_NAME,
    image: s.image,
    command: ['pillion'],
    args: [
      'proxy', '--service', w.service,
      // $(VAR) is expanded by the kubelet from the env below: the namespace is known only when the pod runs.
      '--namespace', '$(POD_NAMESPACE)', '--service-account', w.serviceAccount,
      '--node-id', 'sidecar~$(POD_NAME).$(POD_NAMESPACE)',
      '--xds', s.control.join(','), '--xds-ca', `${BOOTSTRAP_DIR}/root-cert.pem`, '--token', `${BOOTSTRAP_DIR}/token`,
      '--interception', 'redirect',
      '--admin-port', String(ADMIN_PORT), '--inbound-port', String(INBOUND_PORT), '--outbound-port', String(OUTBOUND_PORT),
      '--status-port', String(STATUS_PORT),
      ...(w.appPort === undefined ? [] : ['--app-port', String(w.appPort)]),
    ],
    env: [
      { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
      { name: 'POD_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
      ...(Object.keys(w.appProbes).length === 0 ? [] : [{ name: APP_PROBES_ENV, value: JSON.stringify(w.appProbes) }]),
    ],
    ports: [
      { name: 'pillion-inbound', containerPort: INBOUND_PORT, protocol: 'TCP' },
      { name: 'pillion-status', containerPort: STATUS_PORT, protocol: 'TCP' },
    ],
    resources: { requests: { cpu: '100m', memory: '128Mi' }, limits: { memory: '512Mi' } },
    // The status port, not the admin server: that listens on 127.0.0.1 only (it has /drain and /logging).
    readinessProbe: { httpGet: { path: '/healthz/ready', port: STATUS_PORT }, periodSeconds: 5, timeoutSeconds: 4, failureThreshold: 3 },
    lifecycle: {
      // The kubelet starts the next container only when this returns: the app starts with its sidecar ready.
      postStart: exec('wait-ready', '--admin-port', String(ADMIN_PORT), '--timeout', HOLD_TIMEOUT),
      preStop: exec('drain', '--admin-port', String(ADMIN_PORT), '--delay', DRAIN_DELAY),
    },
    volumeMounts: [{ name: BOOTSTRAP_VOLUME, mountPath: BOOTSTRAP_DIR, readOnly: true }],
    securityContext: {
      runAsUser: s.proxyUid,
      runAsGroup: s.proxyUid,
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    },
    ...(w.nativeSidecar ? { restartPolicy: 'Always' } : {}),
  };
}

function bootstrapVolume(w: Workload): IVolume {
  return {
    name: BOOTSTRAP_VOLUME,
    secret: { secretName: w.bootstrapSecret, defaultMode: 0o444, items: [{ key: 'token', path: 'token' }, { key: 'root-cert.pem', path: 'root-cert.pem' }] },
  };
}

/**
 * The pod spec with the rules' init container, the sidecar first among containers (or a native sidecar right after
 * the rules), and the bootstrap volume. With a classic sidecar the rules go after the app's own init containers,
 * which would otherwise be redirected to a sidecar that has not started; a native sidecar runs before them.
 */
export function injectPodSpec(spec: IPodSpec, s: SidecarSettings, w: Workload): IPodSpec {
  const proxy = sidecar(s, w);
  const own = spec.initContainers ?? [];
  const inits = w.nativeSidecar ? [initContainer(s), proxy, ...own] : [...own, initContainer(s)];
  return {
    ...spec,
    initContainers: inits,
    containers: w.nativeSidecar ? spec.containers : [proxy, ...spec.containers],
    volumes: [...(spec.volumes ?? []), bootstrapVolume(w)],
  };
}
