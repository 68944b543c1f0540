// `pillion ctl`: an operator's view of one running proxy, read from its admin server and printed as tables.
import { parseArgs } from 'node:util';
import { UsageError } from '../bootstrap/args.js';
import type { ClusterStatus, EndpointStatus, ListenerStatus } from '../admin/types.js';
import type { RouteConfigModel } from '../config/model.js';
import type { SecretSummary } from '../tls/summary.js';

export const CTL_USAGE = `usage: pillion ctl <clusters|listeners|routes|certs|config-dump|stats> [--admin HOST:PORT]   (default 127.0.0.1:15000)
`;

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
        const to = r.action.clusters.map((c) => (r.action.clusters.length > 1 ? `${c.name}(${c.weight})` : c.name)).join(' ');
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

export async function runCtlCommand(argv: readonly string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args: [...argv], options: { admin: { type: 'string', default: '127.0.0.1:15000' } }, allowPositionals: true });
  const [what] = positionals;
  const base = `http://${values.admin}`;
  const get = async (path: string): Promise<string> => {
    let res: Response;
    try {
      res = await fetch(base + path);
    } catch (err) {
      throw new Error(`cannot reach the proxy's admin server at ${values.admin}: ${(err as Error).cause ?? (err as Error).message}`);
    }
    if (!res.ok) throw new Error(`${base}${path}: HTTP ${res.status}`);
    return res.text();
  };
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
    default:
      throw new UsageError(`${what === undefined ? 'what to show?' : `unknown view "${what}"`}\n${CTL_USAGE}`);
  }
  process.stdout.write(out);
}
