// Active health checks of a cluster with mTLS go through its transport socket, as Envoy's do: the probe makes the
// same TLS handshake (client certificate, trust bundle, SPIFFE ID check) as the cluster's connections, so a STRICT
// peer answers it, and a peer with the wrong identity fails it. Before, probes were plaintext: every one was
// refused by a STRICT peer (counted there as not_tls), so every endpoint of a health-checked mTLS cluster was
// unhealthy.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import type { RunningProxy } from '../helpers/proxy.js';
import { metricValue, startMeshProxy } from '../tls/mesh-proxy.js';
import { TestCa } from '../tls/test-ca.js';

const TD = 'spiffe://cluster.local/ns/default/sa';
let ca: TestCa;
let app: Backend;
let backend: RunningProxy;
let impostor: RunningProxy;
let frontend: RunningProxy;

const HC = '{ path: /healthz, interval: 100ms, timeout: 1s, unhealthyThreshold: 2, healthyThreshold: 1 }';

beforeAll(async () => {
  ca = new TestCa();
  app = await startHttpBackend('app');
  const server = (name: string, sa: string) =>
    startMeshProxy(
      `
services:
  - name: ${name}
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
`,
      { service: name, appPort: app.port, identity: { cert: ca.issue({ spiffeId: `${TD}/${sa}` }), caPem: ca.caPem } },
    );
  backend = await server('backend', 'backend');
  // Serves `other` but proves another identity than the one its callers expect.
  impostor = await server('other', 'impostor');
  frontend = await startMeshProxy(
    `
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port('inbound')} }]
    policy: { healthCheck: ${HC} }
  - name: other
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${impostor.port('inbound')} }]
    policy: { healthCheck: ${HC} }
`,
    { service: 'frontend', identity: { cert: ca.issue({ spiffeId: `${TD}/frontend` }), caPem: ca.caPem } },
  );
}, 30_000);

afterAll(async () => {
  await Promise.all([frontend?.close(), backend?.close(), impostor?.close()]);
  await app?.close();
  ca?.close();
});

interface Status {
  name: string;
  endpoints: { healthCheck: string | null }[];
}

/** Polls /clusters until the service's one endpoint shows `want` (bounded: 5 s); what it showed last. */
async function healthOf(service: string, want: string): Promise<string | null> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const all = (await (await fetch(`http://127.0.0.1:${frontend.adminPort}/clusters?format=pillion`)).json()) as Status[];
    const got = all.find((c) => c.name.startsWith(`${service}.`))!.endpoints[0]!.healthCheck;
    if (got === want || Date.now() > deadline) return got;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('active health checks of an mTLS cluster', () => {
  it('probe over mTLS: the STRICT peer answers (healthy), and no plaintext probe reaches it', async () => {
    expect(await healthOf('backend', 'healthy')).toBe('healthy');
    expect(await metricValue(backend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'inbound', reason: 'not_tls' })).toBe(0);
    const res = await request(frontend.port('outbound'), { host: 'backend:8080', path: '/' });
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-forwarded-client-cert']).toContain(`URI=${TD}/frontend`);
  });

  it('fail against a peer that proves another SPIFFE ID (secure naming holds for probes too)', async () => {
    expect(await healthOf('other', 'unhealthy')).toBe('unhealthy');
    expect(await metricValue(frontend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'outbound', reason: 'peer_identity' })).toBeGreaterThan(0);
  });
});
