// Admin server against a real socket on 127.0.0.1:0. The AdminSource here is a test double of the peer
// interface (src/admin/types.ts), standing in for the running proxy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EMPTY_SNAPSHOT } from '../config/model.js';
import { ProxyMetrics } from '../observability/metrics.js';
import { startAdminServer, type AdminServer } from './server.js';
import type { AdminSource, ClusterStatus, ConfigDumpSource, ListenerStatus, ServerIdentity, ServerState } from './types.js';

class FakeSource implements AdminSource {
  readonly metrics = new ProxyMetrics({ defaultMetrics: false });
  readonly registry = this.metrics.registry;
  ready = false;
  level = 'info';
  drains = 0;
  inboundOnlyDrains = 0;
  readonly startedAtMs = Date.now() - 12_345;
  isReady(): boolean {
    return this.ready;
  }
  state(): ServerState {
    return this.ready ? 'LIVE' : 'INITIALIZING';
  }
  identity(): ServerIdentity {
    return { node: { id: 'sidecar~web~1', cluster: 'web', metadata: { namespace: 'shop' } }, commandLineOptions: { log_level: 'info' } };
  }
  configDumpSource(): ConfigDumpSource {
    return { listeners: [], routes: [], clusters: [], endpoints: [], versions: { clusters: 'v7' }, secrets: [] };
  }
  snapshot() {
    return { ...EMPTY_SNAPSHOT, version: 'v7' };
  }
  configDump(): unknown {
    return { clusters: [{ name: 'backend.default:8080', version: 'v7' }] };
  }
  clusters(): ClusterStatus[] {
    return [
      {
        name: 'backend.default:8080',
        lbPolicy: 'least_request',
        protocol: 'http1',
        endpoints: [{ address: '10.0.0.1', port: 8080, weight: 1, zone: 'a', region: '', priority: 0, localityWeight: 0, healthy: true, activeRequests: 2, activeConnections: 1, totalRequests: 10, failedRequests: 1, ejectedUntil: null, timesEjected: 0, ejectionReason: null, successRate: null, healthCheck: null }],
      },
    ];
  }
  listeners(): ListenerStatus[] {
    return [{ name: 'outbound', address: '127.0.0.1', port: 15001, direction: 'outbound' }];
  }
  setLogLevel(level: string): boolean {
    if (!['debug', 'info', 'warn'].includes(level)) return false;
    this.level = level;
    return true;
  }
  drain(options?: { inboundOnly?: boolean }): Promise<void> {
    this.drains++;
    if (options?.inboundOnly === true) this.inboundOnlyDrains++;
    return Promise.resolve();
  }
}

const quiet = { info() {}, warn() {} };
let source: FakeSource;
let admin: AdminServer;
let base: string;

beforeAll(async () => {
  source = new FakeSource();
  admin = await startAdminServer(source, { host: '127.0.0.1', port: 0, logger: quiet });
  base = `http://127.0.0.1:${admin.port}`;
});

afterAll(async () => {
  await admin.close();
});

describe('admin server', () => {
  it('picks a free port for port 0', () => {
    expect(admin.port).toBeGreaterThan(0);
  });

  it('serves Prometheus text with the registry content type', async () => {
    source.metrics.downstreamRequests('outbound', 200);
    const r = await fetch(`${base}/metrics`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe(source.registry.contentType);
    expect(await r.text()).toContain('pillion_downstream_requests_total{direction="outbound",code_class="2xx",response_code="200"} 1');
  });

  it('reports readiness and health', async () => {
    source.ready = false;
    let r = await fetch(`${base}/ready`);
    expect([r.status, await r.text()]).toEqual([503, 'INITIALIZING\n']);
    source.ready = true;
    r = await fetch(`${base}/ready`);
    expect([r.status, await r.text()]).toEqual([200, 'LIVE\n']);
    r = await fetch(`${base}/healthz`);
    expect([r.status, await r.text()]).toEqual([200, 'ok\n']);
  });

  it('dumps config (ours, ?format=pillion) with its version, pretty-printed', async () => {
    const r = await fetch(`${base}/config_dump?format=pillion`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toContain('application/json');
    const body = await r.text();
    expect(body.endsWith('}\n')).toBe(true);
    expect(body).toContain('\n  "version": "v7"');
    expect(JSON.parse(body)).toEqual({ version: 'v7', config: source.configDump() });
  });

  it('lists clusters and listeners', async () => {
    expect(await (await fetch(`${base}/clusters?format=pillion`)).json()).toEqual(source.clusters());
    expect(await (await fetch(`${base}/listeners`)).json()).toEqual(source.listeners());
  });

  it('changes the log level, 400 on unknown or missing level', async () => {
    let r = await fetch(`${base}/logging?level=debug`, { method: 'POST' });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ level: 'debug' });
    expect(source.level).toBe('debug');
    r = await fetch(`${base}/logging?level=loud`, { method: 'POST' });
    expect(r.status).toBe(400);
    expect(source.level).toBe('debug');
    r = await fetch(`${base}/logging`, { method: 'POST' });
    expect(r.status).toBe(400);
  });

  it('starts a drain with 202', async () => {
    const r = await fetch(`${base}/drain`, { method: 'POST' });
    expect(r.status).toBe(202);
    expect(source.drains).toBe(1);
    expect(source.inboundOnlyDrains).toBe(0);
    expect(await r.json()).toEqual({ draining: true, scope: 'all' });
  });

  it('drains the inbound listeners only with ?inboundonly (as Envoy\'s /drain_listeners?inboundonly)', async () => {
    const r = await fetch(`${base}/drain?inboundonly`, { method: 'POST' });
    expect(r.status).toBe(202);
    expect(await r.json()).toEqual({ draining: true, scope: 'inbound' });
    expect(source.inboundOnlyDrains).toBe(1);
  });

  it('answers 404 JSON for unknown paths and 405 with Allow for wrong methods', async () => {
    let r = await fetch(`${base}/nope`);
    expect(r.status).toBe(404);
    expect(((await r.json()) as { error: string }).error).toBe('not_found');
    r = await fetch(`${base}/drain`);
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('POST');
    await r.text();
    r = await fetch(`${base}/metrics`, { method: 'POST' });
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('GET, HEAD');
    await r.text();
  });

  it('answers 500 JSON when the source throws', async () => {
    const broken = new FakeSource();
    broken.clusters = () => {
      throw new Error('boom');
    };
    const s = await startAdminServer(broken, { host: '127.0.0.1', port: 0, logger: quiet });
    try {
      const r = await fetch(`http://127.0.0.1:${s.port}/clusters?format=pillion`);
      expect(r.status).toBe(500);
      expect(await r.json()).toMatchObject({ error: 'internal', message: 'boom' });
    } finally {
      await s.close();
    }
  });
});
