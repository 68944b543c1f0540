// `pillion inject` over a YAML stream: finds the pod template of each workload (Deployment, StatefulSet,
// DaemonSet, ReplicaSet, Job, CronJob, Pod), decides the sidecar's settings from its annotations and labels, and
// writes the stream back. Documents it does not change (other kinds, opted out, already injected) are written
// back as they came, comments included.
import yaml from 'js-yaml';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IContainer } from 'kubernetes-models/v1/Container';
import { InterceptOptionsError, validateOptions } from '../intercept/iptables-rules.js';
import { yamlExpansionProblem } from '../../xds/mesh-config.js';
import { rewriteAppProbes } from './app-probes.js';
import { ADMIN_PORT, INBOUND_PORT, INIT_NAME, OUTBOUND_PORT, SIDECAR_NAME, STATUS_PORT, injectPodSpec, type SidecarSettings, type Workload } from './pod-spec.js';

/** On the pod template: `false` opts out; inject writes `injected` and then leaves the workload alone. */
export const INJECT_ANNOTATION = 'pillion.io/inject';
const SERVICE_ANNOTATION = 'pillion.io/service';
const APP_PORT_ANNOTATION = 'pillion.io/app-port';
const SECRET_ANNOTATION = 'pillion.io/bootstrap-secret';
/** `"false"`: the app's kubelet probes stay as they are (Istio's sidecar.istio.io/rewriteAppHTTPProbers). */
const REWRITE_PROBES_ANNOTATION = 'pillion.io/rewrite-app-probes';
const EXCLUDE_ANNOTATIONS = {
  inbound: 'pillion.io/exclude-inbound-ports',
  outbound: 'pillion.io/exclude-outbound-ports',
  cidrs: 'pillion.io/exclude-cidrs',
} as const;

export class InjectError extends Error {
  override name = 'InjectError';
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export interface InjectResult {
  readonly output: string;
  /** One line per document: what was done to it and why (for stderr). */
  readonly notes: string[];
  /** What was left undone that the operator should fix (for stderr, even with --quiet). */
  readonly warnings: string[];
}

/** Where each kind keeps its pod template (metadata + spec). */
function podTemplate(doc: Obj): Obj | undefined {
  const spec = doc.spec;
  if (!isObj(spec)) return undefined;
  switch (doc.kind) {
    case 'Pod':
      return doc;
    case 'Deployment':
    case 'StatefulSet':
    case 'DaemonSet':
    case 'ReplicaSet':
    case 'Job':
      return isObj(spec.template) ? spec.template : undefined;
    case 'CronJob':
      return isObj(spec.jobTemplate) && isObj(spec.jobTemplate.spec) && isObj(spec.jobTemplate.spec.template) ? spec.jobTemplate.spec.template : undefined;
    default:
      return undefined;
  }
}

/** A Kubernetes document separator line; content of a block scalar is indented, so it never starts a line with it. */
const SEPARATOR = /^---[ \t]*(?:#[^\r\n]*)?\r?$/m;

function load(text: string, where: string): unknown {
  let doc: unknown;
  try {
    doc = yaml.load(text);
  } catch (err) {
    throw new InjectError(`${where}: not valid YAML: ${(err as Error).message}`);
  }
  // Writing an alias bomb back out would expand it: refused as the mesh file is.
  const problem = yamlExpansionProblem(doc);
  if (problem !== null) throw new InjectError(`${where}: ${problem}`);
  return doc;
}

function splitDocuments(text: string, source: string): string[] {
  const docs: string[] = [];
  let rest = text;
  for (;;) {
    const m = SEPARATOR.exec(rest);
    if (m === null) break;
    docs.push(rest.slice(0, m.index));
    rest = rest.slice(m.index + m[0].length).replace(/^\r?\n/, '');
  }
  docs.push(rest);
  return docs.filter((d) => d.trim() !== '').filter((d, i) => load(d, `${source} document ${i + 1}`) != null);
}

function annotation(...sources: unknown[]): (key: string) => string | undefined {
  return (key) => {
    for (const meta of sources) {
      if (isObj(meta) && isObj(meta.annotations) && typeof meta.annotations[key] === 'string') return meta.annotations[key];
    }
    return undefined;
  };
}

function portList(where: string, value: string | undefined): number[] {
  if (value === undefined || value.trim() === '') return [];
  return value.split(',').map((p) => {
    const n = Number(p.trim());
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new InjectError(`${where}: expected ports 1-65535 separated by commas, got "${p}"`);
    return n;
  });
}

const merge = <T>(a: readonly T[], b: readonly T[]): T[] => [...new Set([...a, ...b])];

/** The one document, injected, or a note saying why not; warnings are further lines for stderr. */
function injectDocument(doc: Obj, settings: SidecarSettings, where: string): { doc?: Obj; note: string; warnings?: string[] } {
  const template = podTemplate(doc);
  if (template === undefined) return { note: `${where}: ${String(doc.kind ?? 'no kind')} has no pod template, unchanged` };
  const spec = template.spec as IPodSpec;
  const get = annotation(template.metadata, doc.metadata);
  const mode = get(INJECT_ANNOTATION);
  const containers = [...(spec.containers ?? []), ...(spec.initContainers ?? [])];
  if (mode === 'injected' || containers.some((c) => c.name === SIDECAR_NAME || c.name === INIT_NAME)) return { note: `${where}: already injected, unchanged` };
  if (mode === 'false' || mode === 'disabled') return { note: `${where}: ${INJECT_ANNOTATION}: "${mode}", unchanged` };
  if (mode !== undefined && mode !== 'true' && mode !== 'enabled') throw new InjectError(`${where}: ${INJECT_ANNOTATION}: expected "false" (opt out), "true" or "injected", got "${mode}"`);
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) throw new InjectError(`${where}: the pod template has no containers`);

  const meta = isObj(doc.metadata) ? doc.metadata : {};
  const labels = isObj(template.metadata) && isObj(template.metadata.labels) ? template.metadata.labels : {};
  const service = get(SERVICE_ANNOTATION) ?? (labels['app.kubernetes.io/name'] as string | undefined) ?? (labels.app as string | undefined) ?? (meta.name as string | undefined);
  if (typeof service !== 'string' || service === '') throw new InjectError(`${where}: cannot tell the mesh service: set the ${SERVICE_ANNOTATION} annotation or an "app" label`);
  const serviceAccount = spec.serviceAccountName ?? 'default';
  const portValue = get(APP_PORT_ANNOTATION);
  const appPort = portValue !== undefined ? portList(`${where}: ${APP_PORT_ANNOTATION}`, portValue)[0] : spec.containers.flatMap((c) => c.ports ?? []).find((p) => (p.protocol ?? 'TCP') === 'TCP')?.containerPort;
  if (typeof appPort === 'string') throw new InjectError(`${where}: a named containerPort cannot be the app port: set ${APP_PORT_ANNOTATION}`);
  const clash = sidecarPortClash(spec.containers, appPort);
  if (clash !== null) throw new InjectError(`${where}: ${clash}`);
  const restartPolicy = spec.restartPolicy ?? (doc.kind === 'Job' || doc.kind === 'CronJob' ? 'Never' : 'Always');
  const rewriteProbes = get(REWRITE_PROBES_ANNOTATION);
  if (rewriteProbes !== undefined && rewriteProbes !== 'true' && rewriteProbes !== 'false') throw new InjectError(`${where}: ${REWRITE_PROBES_ANNOTATION}: expected "true" or "false", got "${rewriteProbes}"`);
  const excludeInboundPorts = merge(settings.excludeInboundPorts, portList(`${where}: ${EXCLUDE_ANNOTATIONS.inbound}`, get(EXCLUDE_ANNOTATIONS.inbound)));
  const probes = rewriteProbes === 'false' ? { containers: spec.containers, probes: {}, warnings: [] } : rewriteAppProbes(spec.containers, excludeInboundPorts);
  const workload: Workload = {
    service,
    serviceAccount,
    ...(appPort === undefined ? {} : { appPort }),
    bootstrapSecret: get(SECRET_ANNOTATION) ?? `pillion-token-${serviceAccount}`,
    nativeSidecar: restartPolicy !== 'Always',
    appProbes: probes.probes,
  };
  const local: SidecarSettings = {
    ...settings,
    excludeInboundPorts,
    excludeOutboundPorts: merge(settings.excludeOutboundPorts, portList(`${where}: ${EXCLUDE_ANNOTATIONS.outbound}`, get(EXCLUDE_ANNOTATIONS.outbound))),
    excludeCidrs: merge(settings.excludeCidrs, (get(EXCLUDE_ANNOTATIONS.cidrs) ?? '').split(',').map((c) => c.trim()).filter((c) => c !== '')),
  };
  try {
    validateOptions({ proxyUid: local.proxyUid, inboundPort: INBOUND_PORT, outboundPort: OUTBOUND_PORT, excludeInboundPorts: [...local.excludeInboundPorts], excludeOutboundPorts: [...local.excludeOutboundPorts], excludeCidrs: [...local.excludeCidrs] });
  } catch (err) {
    if (err instanceof InterceptOptionsError) throw new InjectError(`${where}: ${err.message}`);
    throw err;
  }
  // An app under the proxy's uid would be exempt from the rules: its traffic would bypass the sidecar unseen.
  const uids = [spec.securityContext?.runAsUser, ...spec.containers.map((c) => c.securityContext?.runAsUser)];
  if (uids.includes(settings.proxyUid)) throw new InjectError(`${where}: a container runs as uid ${settings.proxyUid}, the sidecar's (--proxy-uid): its traffic would not be intercepted; pick another --proxy-uid`);

  const newTemplate: Obj = {
    ...template,
    metadata: {
      ...(isObj(template.metadata) ? template.metadata : {}),
      annotations: { ...(isObj(template.metadata) && isObj(template.metadata.annotations) ? template.metadata.annotations : {}), [INJECT_ANNOTATION]: 'injected' },
    },
    spec: injectPodSpec({ ...spec, containers: probes.containers }, local, workload),
  };
  const kind = String(doc.kind);
  const rewritten = Object.keys(probes.probes).length;
  const probeNote = rewriteProbes === 'false' ? `app probes not rewritten (${REWRITE_PROBES_ANNOTATION}: "false")` : `${rewritten} app probe${rewritten === 1 ? '' : 's'} rewritten to status port ${STATUS_PORT}`;
  const how = `${workload.nativeSidecar ? 'native sidecar (restartPolicy ' + restartPolicy + ')' : 'sidecar'} for service ${service}, service account ${serviceAccount}, app port ${appPort ?? 'none'}, secret ${workload.bootstrapSecret}, ${probeNote}`;
  const warnings = probes.warnings.map((w) => `${where}: warning: ${w}`);
  return { doc: kind === 'Pod' ? newTemplate : replaceTemplate(doc, newTemplate), note: `${where}: injected ${how}`, warnings };
}

/** The ports the sidecar binds in the pod's network namespace, which every container shares. */
const SIDECAR_PORTS: ReadonlyMap<number, string> = new Map([
  [ADMIN_PORT, 'admin'],
  [OUTBOUND_PORT, 'outbound listener'],
  [INBOUND_PORT, 'inbound listener'],
  [STATUS_PORT, 'status port'],
]);

/** An app port the sidecar would also bind: one of the two could not start, so the pod would never be ready. */
function sidecarPortClash(containers: readonly IContainer[], appPort: number | string | undefined): string | null {
  if (typeof appPort === 'number' && SIDECAR_PORTS.has(appPort)) {
    return `app port ${appPort} is the sidecar's ${SIDECAR_PORTS.get(appPort)!} port; move the app off ${[...SIDECAR_PORTS.keys()].join(', ')}`;
  }
  for (const c of containers) {
    for (const p of c.ports ?? []) {
      const used = SIDECAR_PORTS.get(p.containerPort);
      if (used !== undefined) {
        return `containers[${c.name}] declares containerPort ${p.containerPort}, the sidecar's ${used} port in the same network namespace; move the app off ${[...SIDECAR_PORTS.keys()].join(', ')}`;
      }
    }
  }
  return null;
}

function replaceTemplate(doc: Obj, template: Obj): Obj {
  const spec = doc.spec as Obj;
  if (doc.kind === 'CronJob') {
    const jobTemplate = spec.jobTemplate as Obj;
    return { ...doc, spec: { ...spec, jobTemplate: { ...jobTemplate, spec: { ...(jobTemplate.spec as Obj), template } } } };
  }
  return { ...doc, spec: { ...spec, template } };
}

const DUMP: yaml.DumpOptions = { lineWidth: -1, noRefs: true };

/** Injects every workload of a YAML stream (a `kind: List` injects its items); `source` names the input in notes. */
export function injectManifests(text: string, settings: SidecarSettings, source = 'stdin'): InjectResult {
  const notes: string[] = [];
  const warnings: string[] = [];
  const out: string[] = [];
  splitDocuments(text, source).forEach((raw, i) => {
    const doc = load(raw, `${source} document ${i + 1}`);
    const name = isObj(doc) && isObj(doc.metadata) ? String(doc.metadata.name ?? '') : '';
    const where = `${source} document ${i + 1} (${isObj(doc) ? String(doc.kind) : typeof doc}${name === '' ? '' : ` ${name}`})`;
    if (!isObj(doc)) throw new InjectError(`${where}: expected a Kubernetes object`);
    if (doc.kind === 'List' && Array.isArray(doc.items)) {
      let changed = false;
      const items = doc.items.map((item: unknown, j) => {
        if (!isObj(item)) return item;
        const r = injectDocument(item, settings, `${where} item ${j + 1}`);
        notes.push(r.note);
        warnings.push(...(r.warnings ?? []));
        if (r.doc === undefined) return item;
        changed = true;
        return r.doc;
      });
      out.push(changed ? yaml.dump({ ...doc, items }, DUMP) : raw);
      return;
    }
    const r = injectDocument(doc, settings, where);
    notes.push(r.note);
    warnings.push(...(r.warnings ?? []));
    out.push(r.doc === undefined ? raw : yaml.dump(r.doc, DUMP));
  });
  return { output: out.map((d) => (d.endsWith('\n') ? d : `${d}\n`)).join('---\n'), notes, warnings };
}
