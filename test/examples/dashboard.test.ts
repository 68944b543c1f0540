// examples/observability: every query of the Grafana dashboard names only metrics that a real sidecar (`pillion
// proxy` with the mesh CA) and a real `pillion control` export on their /metrics, and prometheus.yml scrapes them.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startMeshWithCa, type MeshWithCa } from '../helpers/mesh-ca.js';
import { balanced, exportedNames, metricNames } from './promql-names.js';

const DIR = new URL('../../examples/observability/', import.meta.url);

interface Panel {
  title?: string;
  type?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { type: string; query?: string | { query?: string } }[] };
}

/** Every PromQL expression of the dashboard: panel targets (rows' nested panels too) and query variables. */
function expressions(d: Dashboard): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  const walk = (panels: readonly Panel[]): void => {
    for (const p of panels) {
      for (const t of p.targets ?? []) if (t.expr !== undefined) out.push({ where: p.title ?? '?', expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  for (const v of d.templating.list) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    if (q !== undefined) out.push({ where: 'templating', expr: q });
  }
  return out;
}

/** `where: name` for each metric a query names that `exported` lacks. */
function unexported(exprs: readonly { where: string; expr: string }[], exported: ReadonlySet<string>): string[] {
  return exprs.flatMap(({ where, expr }) => metricNames(expr).filter((n) => !exported.has(n)).map((n) => `${where}: ${n}`));
}

const dashboard = JSON.parse(readFileSync(new URL('pillion-dashboard.json', DIR), 'utf8')) as Dashboard;

describe('metricNames (the dashboard check\'s tokenizer)', () => {
  it('finds metric names, not functions, labels, keywords, durations, numbers or Grafana variables', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (cluster, le) (rate(pillion_upstream_request_duration_seconds_bucket{service=~"$service",x="a{b}"}[$__rate_interval])))',
      ),
    ).toEqual(['pillion_upstream_request_duration_seconds_bucket']);
    expect(metricNames('sum(rate(a_total[5m] offset 1h)) / on (job) group_left (pod) b_info * 1e3 > bool 0.5 unless c')).toEqual(['a_total', 'b_info', 'c']);
    expect(metricNames('min by (service) (pillion_workload_cert_expiry_timestamp_seconds) - time()')).toEqual(['pillion_workload_cert_expiry_timestamp_seconds']);
    expect(metricNames('label_values(pillion_downstream_requests_total, service)')).toEqual(['pillion_downstream_requests_total']);
  });

  it('reports a query naming a metric nobody exports', () => {
    const exported = exportedNames('# TYPE pillion_upstream_request_duration_seconds histogram\n# TYPE pillion_upstream_retries_total counter\n');
    expect(exported.has('pillion_upstream_request_duration_seconds_bucket')).toBe(true);
    const exprs = [
      { where: 'ok', expr: 'rate(pillion_upstream_retries_total[1m]) + rate(pillion_upstream_request_duration_seconds_count[1m])' },
      { where: 'typo', expr: 'sum(rate(pillion_upstream_retry_total[1m]))' },
    ];
    expect(unexported(exprs, exported)).toEqual(['typo: pillion_upstream_retry_total']);
  });
});

describe('examples/observability', () => {
  let mesh: MeshWithCa;
  let sidecarAdmin: number;

  beforeAll(async () => {
    mesh = await startMeshWithCa(`services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 2 }]
`);
    // With --token: the workload certificate metrics (expiry, renewals) exist only on a sidecar of the mesh CA.
    sidecarAdmin = (await mesh.sidecar('frontend', 'default', ['--inbound-port', '0'])).admin;
  }, 60_000);

  afterAll(async () => {
    await mesh?.close();
  });

  it('the dashboard queries only metrics a sidecar or the control server exports', async () => {
    const scrape = async (port: number): Promise<string> => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const exported = new Set([...exportedNames(await scrape(sidecarAdmin)), ...exportedNames(await scrape(mesh.controlAdmin))]);
    // Both scrapes were read: a name from each side.
    expect(exported.has('pillion_workload_cert_expiry_timestamp_seconds')).toBe(true);
    expect(exported.has('pillion_control_pushes_total')).toBe(true);

    const exprs = expressions(dashboard);
    expect(exprs.length).toBeGreaterThan(30);
    for (const { where, expr } of exprs) {
      expect(balanced(expr), `${where}: ${expr}`).toBe(true);
      expect(metricNames(expr).length, `${where}: ${expr}`).toBeGreaterThan(0);
    }
    expect(unexported(exprs, exported)).toEqual([]);
  });

  it('is a dashboard Grafana can import: unique panel ids, a Prometheus data source variable on every query', () => {
    const all: (Panel & { id?: number; datasource?: { uid?: string } })[] = [];
    const walk = (panels: readonly Panel[]): void => {
      for (const p of panels) {
        all.push(p);
        walk(p.panels ?? []);
      }
    };
    walk(dashboard.panels);
    const ids = all.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of all) if (p.type !== 'row') expect(p.datasource?.uid, p.title).toBe('${datasource}');
    expect(dashboard.templating.list.map((v) => v.type)).toContain('datasource');
  });

  it('covers the golden signals, resilience, certificates and xDS', () => {
    const named = new Set(expressions(dashboard).flatMap(({ expr }) => metricNames(expr)));
    for (const m of [
      'pillion_downstream_requests_total',
      'pillion_downstream_request_duration_seconds_bucket',
      'pillion_downstream_requests_active',
      'pillion_upstream_requests_total',
      'pillion_upstream_request_duration_seconds_bucket',
      'pillion_upstream_endpoints_ejected',
      'pillion_upstream_retries_total',
      'pillion_upstream_ejections_total',
      'pillion_upstream_requests_overflow_total',
      'pillion_upstream_pending_overflow_total',
      'pillion_workload_cert_expiry_timestamp_seconds',
      'pillion_control_pushes_total',
      'pillion_control_nacks_total',
      'pillion_xds_updates_total',
    ]) {
      expect(named.has(m), m).toBe(true);
    }
  });

  it('prometheus.yml scrapes the sidecars\' admin /metrics and the control server\'s, labelled as the dashboard groups them', () => {
    const config = parse(readFileSync(new URL('prometheus.yml', DIR), 'utf8')) as {
      scrape_configs: { job_name: string; metrics_path?: string; static_configs: { targets: string[]; labels?: Record<string, string> }[] }[];
    };
    const jobs = new Map(config.scrape_configs.map((j) => [j.job_name, j]));
    const sidecars = jobs.get('pillion-sidecars')!;
    const control = jobs.get('pillion-control')!;
    for (const job of [sidecars, control]) {
      expect(job.metrics_path ?? '/metrics').toBe('/metrics');
      for (const sc of job.static_configs) for (const t of sc.targets) expect(t).toMatch(/^127\.0\.0\.1:\d+$/);
    }
    // The demo's five sidecars, each with the `service` label the dashboard's queries group by.
    expect(sidecars.static_configs.map((sc) => sc.labels?.service).sort()).toEqual(['backend', 'backend', 'backend', 'frontend', 'inventory']);
    expect(control.static_configs.flatMap((sc) => sc.targets)).toHaveLength(1);
  });
});
