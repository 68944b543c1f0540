// `pillion ctl`: an operator's view of one running proxy (from its admin server) or of the proxies a control server
// serves (from its admin's /proxies), printed as tables.
import { parseArgs } from 'node:util';
import { UsageError } from '../bootstrap/args.js';
import type { ClusterStatus, EndpointStatus, ListenerStatus } from '../admin/types.js';
import type { RouteConfigModel } from '../config/model.js';
import type { SecretSummary } from '../tls/summary.js';
import { configProblems, isRejecting, oneLine, parseProxiesDocument, type ProxiesDocument, type ProxyTypeStatus } from './control-status.js';

export const CTL_USAGE = `usage: pillion ctl <clusters|listeners|routes|certs|config-dump|stats> [--admin HOST:PORT]
       pillion ctl proxies [--control HOST:PORT]

  clusters, listeners, routes, certs, config-dump, stats   one proxy, from its admin server
      --admin HOST:PORT     default $PILLION_ADMIN, else 127.0.0.1:15000
  proxies                   the proxies connected to a control server: per xDS type the version sent, the one
                            ACKed, and the last NACK with its error; and whether the mesh file is valid
      --control HOST:PORT   the control server's admin; default $PILLION_CONTROL, else 127.0.0.1:15014

  A flag wins over its environment variable. Without PATH changes, from the project directory: npx pillion ctl …
`;

export const DEFAULT_ADMIN = '127.0.0.1:15000';
export const DEFAULT_CONTROL_ADMIN = '127.0.0.1:15014';

/** A flag's value, else the environment variable's (when set and not empty), else the default. */
export function addressOf(flag: string | undefined, env: string | undefined, fallback: string): string {
  if (flag !== undefined && flag !== '') return flag;
  if (env !== undefined && env.trim() !== '') return env.trim();
  return fallback;
}

/** Left-aligned columns, two spaces apart: what `kubectl get` users expect. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

/**
 * EDS health first, then active health checking, then outlier detection, in Envoy's flag words (as its
 * /clusters text form shows them): an operator greps for the same words in both.
 */
function health(e: EndpointStatus): string {
  if (!e.healthy) return 'unhealthy';
  if (e.healthCheck === 'unhealthy') return 'failed_active_hc';
  if (e.healthCheck === 'pending') return 'pending_active_hc';
  if (e.ejectedUntil !== null) return 'failed_outlier_check';
  return 'healthy';
}

/** Share of this endpoint's finished requests that did not fail; '-' before the first one. */
function successRate(e: EndpointStatus): string {
  if (e.totalRequests <= 0) return '-';
  return `${((100 * Math.max(0, e.totalRequests - e.failedRequests)) / e.totalRequests).toFixed(1)}%`;
}

/**
 * When the ejection ends (UTC time of day, and how long from `nowMs`), its multiplier, and its reason when the
 * proxy reports one (older proxies' /clusters has no `ejectionReason`).
 */
function ejection(e: EndpointStatus, nowMs: number): string {
  if (e.ejectedUntil === null) return '-';
  const until = Date.parse(e.ejectedUntil);
  const left = Number.isFinite(until) ? `in ${Math.max(0, Math.ceil((until - nowMs) / 1000))}s` : '';
  const time = e.ejectedUntil.includes('T') ? e.ejectedUntil.slice(e.ejectedUntil.indexOf('T') + 1) : e.ejectedUntil;
  const reason = typeof e.ejectionReason === 'string' ? ` ${e.ejectionReason}` : '';
  return `${time} (${left ? `${left}, ` : ''}x${e.timesEjected})${reason}`;
}

export function formatClusters(clusters: readonly ClusterStatus[], nowMs: number = Date.now()): string {
  const rows: string[][] = [];
  for (const c of clusters) {
    if (c.endpoints.length === 0) rows.push([c.name, c.lbPolicy, c.protocol, '(no endpoints)', '', '', '', '', '', '', '']);
    for (const e of c.endpoints) {
      const host = e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
      rows.push([
        c.name,
        c.lbPolicy,
        c.protocol,
        host,
        String(e.weight),
        health(e),
        String(e.activeRequests),
        String(e.totalRequests),
        String(e.failedRequests),
        successRate(e),
        ejection(e, nowMs),
      ]);
    }
  }
  return table(['CLUSTER', 'LB', 'PROTOCOL', 'ENDPOINT', 'WEIGHT', 'HEALTH', 'ACTIVE', 'TOTAL', 'FAILED', 'SUCCESS', 'EJECTED UNTIL'], rows);
}

export function formatListeners(listeners: readonly ListenerStatus[]): string {
  return table(['LISTENER', 'ADDRESS', 'DIRECTION'], listeners.map((l) => [l.name, `${l.address}:${l.port}`, l.direction]));
}

export function formatRoutes(configs: readonly RouteConfigModel[]): string {
  const rows: string[][] = [];
  for (const rc of configs) {
    for (const vh of rc.virtualHosts) {
      const domains = vh.domains.length > 3 ? `${vh.domains.slice(0, 3).join(',')},+${vh.domains.length - 3}` : vh.domains.join(',');
      for (const r of vh.routes) {
        const m = r.match;
        const headers = m.headers.map((h) => `${h.invert ? '!' : ''}${h.name}${h.kind === 'present' ? '' : `~${h.kind}:${h.value}`}`).join(' ');
        const match = `${m.kind === 'path' ? '=' : ''}${m.value}${headers ? ` [${headers}]` : ''}`;
        const to =
          r.directResponse !== undefined
            ? `direct_response ${r.directResponse.status}`
            : r.action.clusters.map((c) => (r.action.clusters.length > 1 ? `${c.name}(${c.weight})` : c.name)).join(' ');
        rows.push([rc.name, domains, match, to, r.action.timeoutMs > 0 ? `${r.action.timeoutMs}ms` : 'none']);
      }
    }
  }
  return table(['ROUTE CONFIG', 'DOMAINS', 'MATCH', 'CLUSTERS', 'TIMEOUT'], rows);
}

/** Pillion's own samples from Prometheus text, without HELP/TYPE lines, histogram buckets or zeros. */
export function formatStats(metrics: string): string {
  return (
    metrics
      .split('\n')
      .filter((l) => l.startsWith('pillion_') && !l.includes('_bucket{') && !l.endsWith(' 0'))
      .sort()
      .join('\n') + '\n'
  );
}

/** /config_dump's certificate summary: one row per certificate of each secret (the key is never there). */
export function formatCerts(secrets: readonly SecretSummary[], nowMs: number = Date.now()): string {
  const rows: string[][] = [];
  for (const s of secrets) {
    for (const c of s.certificates) {
      const left = Math.round((Date.parse(c.notAfter) - nowMs) / 1000);
      const expires = left <= 0 ? `${c.notAfter} (expired)` : `${c.notAfter} (in ${left < 120 ? `${left}s` : left < 7200 ? `${Math.round(left / 60)}m` : `${Math.round(left / 3600)}h`})`;
      rows.push([s.name, s.kind, c.spiffeId ?? '-', c.subject || '-', expires, c.serial]);
    }
  }
  if (rows.length === 0) return 'no certificates (no workload identity: --cert/--key/--ca, or --token with the mesh CA)\n';
  return table(['SECRET', 'KIND', 'SPIFFE ID', 'SUBJECT', 'NOT AFTER', 'SERIAL'], rows);
}

/** A type's state on one proxy: what it did with the newest version it was sent. */
function typeState(t: ProxyTypeStatus): string {
  if (t.versionSent === null) return '-';
  if (isRejecting(t)) return 'NACKED';
  return t.versionAcked === t.versionSent ? 'ACKED' : 'PENDING';
}

/** Envoy's order of the xDS types (listeners, routes, clusters, endpoints), by type URL; others after. */
/** How long one admin request (answer and body) may take: these are local servers answering from memory. */
const CTL_TIMEOUT_MS = 5_000;

const TYPE_ORDER = ['Listener', 'RouteConfiguration', 'Cluster', 'ClusterLoadAssignment'];
function typeRank(t: ProxyTypeStatus, label: string): number {
  const name = (t.typeUrl ?? label).slice((t.typeUrl ?? label).lastIndexOf('.') + 1);
  const i = TYPE_ORDER.indexOf(name);
  return i < 0 ? TYPE_ORDER.length : i;
}

/** The control server's view: the mesh file's state, then one row per connected proxy and xDS type. */
export function formatProxies(doc: ProxiesDocument, nowMs: number = Date.now()): string {
  const problems = configProblems(doc);
  const head =
    problems.length === 0
      ? `mesh config: valid${doc.configVersion ? `, version ${doc.configVersion}` : ''}\n`
      : `mesh config: INVALID since ${doc.configError!.at}; every proxy keeps the last good config${doc.configVersion ? ` (version ${doc.configVersion})` : ''}:\n${problems.map((p) => `  ${oneLine(p, 300)}\n`).join('')}`;
  if (doc.proxies.length === 0) return `${head}no proxies connected\n`;
  const rows: string[][] = [];
  for (const p of [...doc.proxies].sort((a, b) => a.nodeId.localeCompare(b.nodeId))) {
    const since = p.connectedSince ? Date.parse(p.connectedSince) : NaN;
    const connected = Number.isFinite(since) ? `${Math.max(0, Math.round((nowMs - since) / 1000))}s` : '-';
    const service = p.proxyless ? '(proxyless)' : p.service ? `${p.service}.${p.namespace ?? 'default'}` : '-';
    for (const [type, t] of Object.entries(p.types).sort(([a, ta], [b, tb]) => typeRank(ta, a) - typeRank(tb, b) || a.localeCompare(b))) {
      const nack = t.lastNack ? `${t.lastNack.version} at ${t.lastNack.at}: ${oneLine(t.lastNack.error, 200)}` : '-';
      rows.push([p.nodeId, service, connected, type, t.versionSent ?? '-', t.versionAcked ?? '-', typeState(t), nack]);
    }
    if (Object.keys(p.types).length === 0) rows.push([p.nodeId, service, connected, '-', '-', '-', '-', '-']);
  }
  return head + table(['NODE', 'SERVICE', 'CONNECTED', 'TYPE', 'SENT', 'ACKED', 'STATE', 'LAST NACK'], rows);
}

export async function runCtlCommand(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const { values, positionals } = parseArgs({ args: [...argv], options: { admin: { type: 'string' }, control: { type: 'string' } }, allowPositionals: true });
  const [what] = positionals;
  const admin = addressOf(values.admin, env.PILLION_ADMIN, DEFAULT_ADMIN);
  const control = addressOf(values.control, env.PILLION_CONTROL, DEFAULT_CONTROL_ADMIN);
  const fetchText = async (hostPort: string, whose: string, path: string): Promise<string> => {
    const url = `http://${hostPort}${path}`;
    // Bounds the answer and its body: a wedged admin server (or a port held by something that never answers)
    // must end the command with a reason, not hang the operator's shell.
    const signal = AbortSignal.timeout(CTL_TIMEOUT_MS);
    const timedOut = (err: unknown): Error | undefined =>
      (err as Error).name === 'TimeoutError' ? new Error(`${whose} at ${hostPort} did not answer ${path} within ${CTL_TIMEOUT_MS / 1000} s`) : undefined;
    let res: Response;
    try {
      res = await fetch(url, { signal });
    } catch (err) {
      throw timedOut(err) ?? new Error(`cannot reach ${whose} at ${hostPort}: ${(err as Error).cause ?? (err as Error).message}`);
    }
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}${res.status === 404 ? ` (is ${hostPort} ${whose}?)` : ''}`);
    try {
      return await res.text();
    } catch (err) {
      throw timedOut(err) ?? err;
    }
  };
  const get = (path: string): Promise<string> => fetchText(admin, "the proxy's admin server", path);
  let out: string;
  switch (what) {
    case 'clusters':
      out = formatClusters(JSON.parse(await get('/clusters?format=pillion')) as ClusterStatus[]);
      break;
    case 'listeners':
      out = formatListeners(JSON.parse(await get('/listeners')) as ListenerStatus[]);
      break;
    case 'routes':
      out = formatRoutes(JSON.parse(await get('/routes')) as RouteConfigModel[]);
      break;
    case 'certs':
      out = formatCerts((JSON.parse(await get('/config_dump?format=pillion')) as { config: { secrets?: SecretSummary[] } }).config.secrets ?? []);
      break;
    case 'config-dump':
      out = await get('/config_dump?format=pillion');
      break;
    case 'stats':
      out = formatStats(await get('/metrics'));
      break;
    case 'proxies':
      out = formatProxies(parseProxiesDocument(await fetchText(control, "the control server's admin server", '/proxies')));
      break;
    default:
      throw new UsageError(`${what === undefined ? 'what to show?' : `unknown view "${what}"`}\n${CTL_USAGE}`);
  }
  process.stdout.write(out);
}
