// The admin endpoints Envoy also has, read as Envoy tooling reads them, over real HTTP from a real proxy:
// /ready and /server_info, /stats (text, JSON, Prometheus), /clusters (text `a::b::c` lines and JSON), and
// /config_dump as envoy.admin.v3.ConfigDump (@type on every Any, proto3 JSON durations and wrappers, no
// decoder-internal oneof keys, ?resource= and ?mask=, private keys never shown). Our own JSON stays at ?format=pillion.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { loadLocalSnapshot } from '../../src/config/local.js';
import { anyField, encodeMessage, messageType, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import type { RawResource, ResourceSet } from '../../src/config/snapshot.js';
import { Proxy } from '../../src/proxy.js';
import { setIdentity } from '../tls/mesh-proxy.js';
import { TestCa, type IssuedCert } from '../tls/test-ca.js';

const ADMIN = 'type.googleapis.com/envoy.admin.v3.';
const INLINE_KEY = 'INLINE-PRIVATE-KEY-MATERIAL';

let backend: Backend;
let proxy: Proxy;
let ca: TestCa;
let cert: IssuedCert;
let dir: string;
let base: string;
let resources: ResourceSet;

/** A cluster with an inline private key in its transport socket: the one thing a config dump must never show. */
const keyedCluster = (connectNanos: number): RawResource => ({
  name: 'keyed',
  typeUrl: TYPE_URLS.Cluster,
  value: encodeMessage(MESSAGE_NAMES.Cluster, {
    name: 'keyed',
    type: 'STATIC',
    connect_timeout: { seconds: 1, nanos: connectNanos },
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: anyField(MESSAGE_NAMES.UpstreamTlsContext, {
        common_tls_context: { tls_certificates: [{ certificate_chain: { inline_string: 'CERT' }, private_key: { inline_string: INLINE_KEY } }] },
      }),
    },
  }),
});

async function get(path: string): Promise<{ status: number; body: string; type: string }> {
  const r = await fetch(base + path);
  return { status: r.status, body: await r.text(), type: r.headers.get('content-type') ?? '' };
}

async function getJson<T>(path: string): Promise<T> {
  const r = await get(path);
  expect(r.status, `${path}: ${r.body}`).toBe(200);
  return JSON.parse(r.body) as T;
}

/** Envoy's /clusters text as scripts split it: `cluster::host::stat::value` or `cluster::key::value`. */
function clusterLines(text: string): string[][] {
  return text.trimEnd().split('\n').map((l) => l.split('::'));
}

/** Envoy's /stats text as scripts read it: `name: value` (the name may hold ': ' only inside Prometheus labels). */
function statLines(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.trimEnd().split('\n')) {
    const at = line.lastIndexOf(': ');
    out.set(line.slice(0, at), Number(line.slice(at + 2)));
  }
  return out;
}

/** Every key of every object in a JSON value (bounded by the value's size). */
function keysOf(v: unknown, out = new Set<string>()): Set<string> {
  if (Array.isArray(v)) for (const x of v) keysOf(x, out);
  else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      out.add(k);
      keysOf(x, out);
    }
  }
  return out;
}

/** Every object with an "@type" in a JSON value. */
function typed(v: unknown, out: Record<string, unknown>[] = []): Record<string, unknown>[] {
  if (Array.isArray(v)) for (const x of v) typed(x, out);
  else if (v !== null && typeof v === 'object') {
    if ('@type' in v) out.push(v as Record<string, unknown>);
    for (const x of Object.values(v)) typed(x, out);
  }
  return out;
}

beforeAll(async () => {
  backend = await startHttpBackend('backend', (_req, res) => {
    res.writeHead(200);
    res.end('ok');
  });
  ca = new TestCa();
  cert = ca.issue({ spiffeId: 'spiffe://cluster.local/ns/default/sa/client' });
  dir = mkdtempSync(join(tmpdir(), 'pillion-envoy-admin-'));
  const file = join(dir, 'mesh.yaml');
  writeFileSync(
    file,
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]
    policy:
      connectTimeout: 250ms
      circuitBreakers: { maxConnections: 7, maxPendingRequests: 8, maxRequests: 9, maxRetries: 2 }
      outlierDetection: { consecutive5xx: 5, interval: 10s, baseEjectionTime: 30s }
`,
  );
  const local = loadLocalSnapshot(file, { id: 'test~client', service: 'client', namespace: 'default', serviceAccount: 'client', inboundPort: 0, outboundPort: 0 });
  proxy = new Proxy({
    adminPort: 0,
    logger: pino({ level: 'silent' }),
    accessLog: 'off',
    processMetrics: false,
    drainTimeoutMs: 1_000,
    identity: { node: { id: 'test~client', cluster: 'client', metadata: { namespace: 'default' } }, commandLineOptions: { log_level: 'info' } },
  });
  await proxy.startAdmin();
  base = `http://127.0.0.1:${proxy.adminPort}`;
  resources = { ...local.resources, clusters: [...local.resources.clusters, keyedCluster(0)] };
});

afterAll(async () => {
  await proxy.stop();
  await backend.close();
  ca.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('Envoy-shaped admin', () => {
  it('/ready says PRE_INITIALIZING (503) before any config, LIVE (200) once applied', async () => {
    expect(await get('/ready')).toMatchObject({ status: 503, body: 'PRE_INITIALIZING\n' });
    expect((await getJson<{ state: string }>('/server_info')).state).toBe('PRE_INITIALIZING');
    const applied = await proxy.apply(resources, 'v1');
    expect(applied.errors).toEqual([]);
    setIdentity(proxy, cert, ca.caPem);
    expect(await get('/ready')).toMatchObject({ status: 200, body: 'LIVE\n' });
    const outbound = proxy.listeners().find((l) => l.name === 'outbound')!.port;
    for (let i = 0; i < 3; i++) expect((await request(outbound, { host: 'backend' })).status).toBe(200);
  });

  it('/server_info is Envoy\'s ServerInfo: version, state, uptimes as durations, node, command line', async () => {
    const info = await getJson<Record<string, unknown>>('/server_info');
    expect(info.state).toBe('LIVE');
    expect(String(info.version).split('/')[1]).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.uptime_current_epoch).toMatch(/^\d+s$/);
    expect(info.uptime_all_epochs).toBe(info.uptime_current_epoch);
    expect(info.hot_restart_version).toBe('disabled');
    expect(info.node).toMatchObject({ id: 'test~client', cluster: 'client', metadata: { namespace: 'default' } });
    expect(info.command_line_options).toMatchObject({ log_level: 'info', restart_epoch: 0 });
  });

  it('/stats prints Envoy stat names where ours have one, the rest under their Prometheus names', async () => {
    const r = await get('/stats');
    expect(r.type).toContain('text/plain');
    const stats = statLines(r.body);
    expect(stats.get('cluster.backend.default_8080.upstream_rq_total')).toBe(3);
    expect(stats.get('cluster.backend.default_8080.upstream_rq_2xx')).toBe(3);
    // By exact code too (Envoy's upstream_rq_200 / downstream_rq_200); a code never seen has no stat.
    expect(stats.get('cluster.backend.default_8080.upstream_rq_200')).toBe(3);
    expect(stats.get('http.outbound.downstream_rq_200')).toBe(3);
    expect(stats.has('cluster.backend.default_8080.upstream_rq_503')).toBe(false);
    expect(stats.get('http.outbound.downstream_rq_total')).toBe(3);
    expect(stats.get('pillion_config_updates_total{result="applied"}')).toBe(1);
    const names = [...stats.keys()];
    expect(names).toEqual([...names].sort());
    expect(names.some((n) => n.endsWith('_bucket') || n.includes('le='))).toBe(false);

    const json = await getJson<{ stats: { name: string; value: number }[] }>('/stats?format=json');
    expect(json.stats.find((s) => s.name === 'cluster.backend.default_8080.upstream_rq_total')?.value).toBe(3);
    const filtered = statLines((await get('/stats?filter=upstream_rq_total$')).body);
    expect([...filtered.keys()].every((n) => n.endsWith('upstream_rq_total'))).toBe(true);
    expect(filtered.size).toBeGreaterThan(0);
    expect((await get('/stats?filter=(')).status).toBe(400);
    // A pattern that could backtrack for ever is refused, not run (Envoy's RE2 never backtracks; V8's engine can).
    const evil = await get(`/stats?filter=${encodeURIComponent('(a+)+$')}`);
    expect(evil.status).toBe(400);
    expect(evil.body).toContain('quantified group');

    const prom = await get('/stats/prometheus');
    expect(prom.type).toBe((await get('/metrics')).type);
    expect(prom.body).toMatch(/pillion_upstream_requests_total\{cluster="backend\.default:8080",endpoint="[^"]+",code_class="2xx",response_code="200"\} 3/);
  });

  it('/clusters is Envoy\'s text: thresholds, added_via_api and per-host stats a script can split on "::"', async () => {
    const r = await get('/clusters');
    expect(r.status).toBe(200);
    expect(r.type).toContain('text/plain');
    const lines = clusterLines(r.body).filter((l) => l[0] === 'backend.default:8080');
    const value = (...key: string[]): string | undefined => lines.find((l) => key.every((k, i) => l[i + 1] === k))?.[key.length + 1];
    expect(value('default_priority', 'max_connections')).toBe('7');
    expect(value('default_priority', 'max_pending_requests')).toBe('8');
    expect(value('default_priority', 'max_requests')).toBe('9');
    expect(value('default_priority', 'max_retries')).toBe('2');
    expect(value('added_via_api')).toBe('true');
    const host = `127.0.0.1:${backend.port}`;
    expect(value(host, 'rq_total')).toBe('3');
    expect(value(host, 'rq_success')).toBe('3');
    expect(value(host, 'rq_error')).toBe('0');
    expect(value(host, 'rq_active')).toBe('0');
    expect(Number(value(host, 'cx_active'))).toBeGreaterThanOrEqual(0);
    expect(value(host, 'health_flags')).toBe('healthy');
    expect(value(host, 'weight')).toBe('1');
    expect(value(host, 'priority')).toBe('0');
    expect(value(host, 'success_rate')).toBe('-1');
    // Every line is cluster::…::value with nothing empty but the value.
    for (const l of clusterLines(r.body)) expect(l.slice(0, -1).every((p) => p !== '')).toBe(true);
  });

  it('/clusters?format=json is envoy.admin.v3.Clusters; ?format=pillion is ours', async () => {
    type Host = { address: { socket_address: { address: string; port_value: number } }; stats: { name: string; value: string; type?: string }[]; health_status: Record<string, unknown>; weight: number };
    const envoy = await getJson<{ cluster_statuses: { name: string; added_via_api: boolean; host_statuses: Host[]; circuit_breakers?: { thresholds: Record<string, unknown>[] } }[] }>('/clusters?format=json');
    const c = envoy.cluster_statuses.find((x) => x.name === 'backend.default:8080')!;
    expect(c.added_via_api).toBe(true);
    expect(c.circuit_breakers?.thresholds[0]).toMatchObject({ max_connections: 7, max_pending_requests: 8, max_requests: 9, max_retries: 2 });
    const h = c.host_statuses[0]!;
    expect(h.address.socket_address).toEqual({ address: '127.0.0.1', port_value: backend.port });
    expect(h.stats.find((s) => s.name === 'rq_total')).toEqual({ name: 'rq_total', value: '3' });
    expect(h.stats.find((s) => s.name === 'rq_active')).toMatchObject({ type: 'GAUGE', value: '0' });
    expect(h.health_status).toEqual({ eds_health_status: 'HEALTHY' });
    expect(h.weight).toBe(1);

    const ours = await getJson<{ name: string; endpoints: { totalRequests: number }[] }[]>('/clusters?format=pillion');
    expect(ours.find((x) => x.name === 'backend.default:8080')?.endpoints[0]?.totalRequests).toBe(3);
  });

  it('/config_dump is envoy.admin.v3.ConfigDump: typed configs, dynamic active resources, proto3 JSON values', async () => {
    const r = await get('/config_dump');
    expect(r.body).not.toContain(INLINE_KEY);
    expect(r.body).not.toContain(cert.keyPem.split('\n')[1]!);
    const dump = JSON.parse(r.body) as { configs: Record<string, unknown>[] };
    expect(dump.configs.map((c) => c['@type'])).toEqual(
      ['ClustersConfigDump', 'ListenersConfigDump', 'RoutesConfigDump', 'SecretsConfigDump'].map((t) => ADMIN + t),
    );
    // Every Any is typed with a type we can look up (our protos, or Envoy's admin types around them).
    for (const t of typed(dump)) {
      const url = String(t['@type']);
      if (!url.startsWith(ADMIN)) expect(() => messageType(url.slice(url.lastIndexOf('/') + 1)), url).not.toThrow();
    }
    const keys = keysOf(dump);
    for (const internal of ['port_specifier', 'config_type', 'cluster_discovery_type', 'type_url', 'typeUrl']) expect(keys.has(internal), internal).toBe(false);

    const clusters = dump.configs[0] as { version_info: string; dynamic_active_clusters: { version_info: string; last_updated: string; cluster: Record<string, unknown> }[] };
    expect(clusters.version_info).toBe('v1');
    const backendCluster = clusters.dynamic_active_clusters.find((c) => c.cluster.name === 'backend.default:8080')!;
    expect(backendCluster.version_info).toBe('v1');
    expect(new Date(backendCluster.last_updated).toISOString()).toBe(backendCluster.last_updated);
    expect(backendCluster.cluster['@type']).toBe(TYPE_URLS.Cluster);
    expect(backendCluster.cluster.connect_timeout).toBe('0.250s');
    expect(backendCluster.cluster.circuit_breakers).toMatchObject({ thresholds: [{ max_connections: 7, max_pending_requests: 8, max_requests: 9, max_retries: 2 }] });
    expect(typeof backendCluster.cluster.lb_policy === 'string' || backendCluster.cluster.lb_policy === undefined).toBe(true);
    const keyed = clusters.dynamic_active_clusters.find((c) => c.cluster.name === 'keyed')!;
    expect(keyed.cluster.connect_timeout).toBe('1s');
    expect(JSON.stringify(keyed.cluster)).toContain('"private_key":{"inline_string":"[redacted]"}');
    expect(JSON.stringify(keyed.cluster)).toContain(`"@type":"${TYPE_URLS.UpstreamTlsContext}"`);

    const listeners = dump.configs[1] as { dynamic_listeners: { name: string; active_state: { version_info: string; listener: Record<string, unknown> } }[] };
    const outbound = listeners.dynamic_listeners.find((l) => l.name === 'outbound')!;
    expect(outbound.active_state.listener['@type']).toBe(TYPE_URLS.Listener);
    expect(outbound.active_state.listener.address).toMatchObject({ socket_address: { address: expect.any(String) as string, port_value: expect.any(Number) as number } });
    expect(JSON.stringify(outbound)).toContain(`"@type":"${TYPE_URLS.HttpConnectionManager}"`);

    const secrets = dump.configs[3] as { dynamic_active_secrets: { name: string; secret: Record<string, unknown> }[] };
    const workload = secrets.dynamic_active_secrets.find((s) => s.name === 'default')!;
    expect(workload.secret).toMatchObject({ '@type': TYPE_URLS.Secret, name: 'default', tls_certificate: { certificate_chain: { inline_string: cert.certPem }, private_key: { inline_string: '[redacted]' } } });
  });

  it('/config_dump?resource= lists one field\'s elements, each typed; ?mask= trims; ?include_eds adds endpoints', async () => {
    const active = await getJson<{ configs: Record<string, unknown>[] }>('/config_dump?resource=dynamic_active_clusters');
    expect(active.configs.length).toBe(resources.clusters.length);
    for (const c of active.configs) expect(c['@type']).toBe(`${ADMIN}ClustersConfigDump.DynamicCluster`);

    const names = await getJson<{ configs: Record<string, unknown>[] }>('/config_dump?resource=dynamic_active_clusters&mask=cluster.name');
    for (const c of names.configs) {
      expect(Object.keys(c).sort()).toEqual(['@type', 'cluster']);
      expect(Object.keys(c.cluster as object).sort()).toEqual(['@type', 'name']);
    }
    expect(names.configs.map((c) => (c.cluster as { name: string }).name).sort()).toEqual(['backend.default:8080', 'client.default:8080', 'keyed']);

    const versions = await getJson<{ configs: Record<string, unknown>[] }>('/config_dump?mask=version_info,dynamic_listeners.name');
    expect(versions.configs[0]).toEqual({ '@type': `${ADMIN}ClustersConfigDump`, version_info: 'v1' });
    expect(versions.configs[1]).toMatchObject({ '@type': `${ADMIN}ListenersConfigDump`, version_info: 'v1' });
    for (const l of (versions.configs[1] as { dynamic_listeners: object[] }).dynamic_listeners) expect(Object.keys(l)).toEqual(['name']);

    expect((await get('/config_dump?resource=no_such_field')).status).toBe(404);
    const eds = await getJson<{ configs: Record<string, unknown>[] }>('/config_dump?include_eds');
    expect(eds.configs.map((c) => c['@type'])).toContain(`${ADMIN}EndpointsConfigDump`);

    const ours = await getJson<{ version: string; config: { clusters: unknown[]; secrets: unknown[] } }>('/config_dump?format=pillion');
    expect(ours.version).toBe('v1');
    expect(ours.config.clusters.length).toBe(resources.clusters.length);
  });

  it('last_updated moves only for a resource whose bytes changed', async () => {
    type Dyn = { configs: { version_info: string; last_updated: string; cluster: { name: string } }[] };
    const before = await getJson<Dyn>('/config_dump?resource=dynamic_active_clusters');
    await new Promise((r) => setTimeout(r, 20));
    const changed = { ...resources, clusters: [...resources.clusters.filter((c) => c.name !== 'keyed'), keyedCluster(500_000_000)] };
    expect((await proxy.apply(changed, 'v2')).errors).toEqual([]);
    const after = await getJson<Dyn>('/config_dump?resource=dynamic_active_clusters');
    const at = (d: Dyn, name: string) => d.configs.find((c) => c.cluster.name === name)!;
    expect(at(after, 'backend.default:8080').last_updated).toBe(at(before, 'backend.default:8080').last_updated);
    expect(Date.parse(at(after, 'keyed').last_updated)).toBeGreaterThan(Date.parse(at(before, 'keyed').last_updated));
    expect(at(after, 'keyed').version_info).toBe('v2');
    const keyed = await getJson<{ configs: { cluster: { connect_timeout: string } }[] }>('/config_dump?resource=dynamic_active_clusters&mask=cluster.connect_timeout');
    expect(keyed.configs.map((c) => c.cluster.connect_timeout)).toContain('1.500s');
  });

  it('/ready answers DRAINING with 503 once draining starts', async () => {
    const drained = proxy.drain();
    expect(await get('/ready')).toMatchObject({ status: 503, body: 'DRAINING\n' });
    expect((await getJson<{ state: string }>('/server_info')).state).toBe('DRAINING');
    await drained;
  });
});
