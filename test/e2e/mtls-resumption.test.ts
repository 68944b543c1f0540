// TLS session resumption on the mTLS hop: a new connection from the client sidecar to a peer resumes the session
// of the last one (counted in pillion_upstream_tls_handshakes_total{session="resumed"}), the peer still knows the
// client's identity on it (XFCC with the same certificate hash), and after the client's certificate rotates the
// next connection makes a full handshake and presents the new certificate.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import type { RunningProxy } from '../helpers/proxy.js';
import { metricValue, setIdentity, startSidecarPair } from '../tls/mesh-proxy.js';
import { TestCa } from '../tls/test-ca.js';

const TD = 'spiffe://cluster.local/ns/default/sa';
let ca: TestCa;
let app: Backend;
let server: RunningProxy;
let client: RunningProxy;

beforeAll(async () => {
  ca = new TestCa();
  app = await startHttpBackend('app');
  // An idle timeout under a second: the inbound says keep-alive: timeout=0, so the client sidecar's pool closes its
  // connection after each response and every request is a new connection (a new handshake).
  ({ server, client } = await startSidecarPair(ca, app.port, {
    hcm: { common_http_protocol_options: { idle_timeout: { seconds: 0, nanos: 300_000_000 } } },
  }));
}, 30_000);

afterAll(async () => {
  await Promise.all([client?.close(), server?.close()]);
  await app?.close();
  ca?.close();
});

async function xfcc(): Promise<string> {
  const res = await request(client.port('outbound'), { host: 'backend:8080', path: '/' });
  expect(res.status).toBe(200);
  return (JSON.parse(res.body) as { headers: Record<string, string> }).headers['x-forwarded-client-cert']!;
}

const handshakes = (session: 'full' | 'resumed'): Promise<number> => metricValue(client.proxy, 'pillion_upstream_tls_handshakes_total', { session });

describe('TLS session resumption between sidecars', () => {
  it('resumes the last session on a new connection, with the client identity intact; not after the client rotates', async () => {
    const first = await xfcc();
    expect(first).toMatch(new RegExp(`Hash=[0-9a-f]{64};URI=${TD}/frontend$`));
    const full = await handshakes('full');
    const resumed = await handshakes('resumed');
    expect(full).toBeGreaterThanOrEqual(1);
    // Each request is a new connection (keep-alive: timeout=0): these resume the first one's session.
    expect(await xfcc()).toBe(first);
    expect(await xfcc()).toBe(first);
    expect(await metricValue(server.proxy, 'pillion_downstream_connections_transport_total', { transport: 'tls' })).toBeGreaterThanOrEqual(3);
    expect(await handshakes('resumed')).toBe(resumed + 2);
    expect(await handshakes('full')).toBe(full);

    // The client's certificate rotates: the next connection is a full handshake with the new one.
    setIdentity(client.proxy, ca.issue({ spiffeId: `${TD}/frontend`, cn: 'frontend-2' }), ca.caPem);
    const rotated = await xfcc();
    expect(rotated).toMatch(new RegExp(`URI=${TD}/frontend$`));
    expect(rotated).not.toBe(first);
    expect(await handshakes('full')).toBe(full + 1);
  });

  it('refuses a resumed session whose client certificate has expired since (OpenSSL does not check dates on resumption)', async () => {
    const endMs = Math.ceil(Date.now() / 1000) * 1000 + 2_000;
    const stamp = (d: Date): string => d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
    setIdentity(client.proxy, ca.issue({ spiffeId: `${TD}/frontend`, cn: 'short', endDate: stamp(new Date(endMs)) }), ca.caPem);
    expect(await xfcc()).toMatch(new RegExp(`URI=${TD}/frontend$`));
    await new Promise((r) => setTimeout(r, Math.max(0, endMs - Date.now()) + 1_100));
    const expiredBefore = await metricValue(server.proxy, 'pillion_tls_handshake_failures_total', { direction: 'inbound', reason: 'certificate_expired' });
    const resumedBefore = await handshakes('resumed');
    const res = await request(client.port('outbound'), { host: 'backend:8080', path: '/' });
    expect(res.status).toBe(503);
    expect(await handshakes('resumed'), 'the client offered the session and the server resumed it').toBeGreaterThan(resumedBefore);
    expect(await metricValue(server.proxy, 'pillion_tls_handshake_failures_total', { direction: 'inbound', reason: 'certificate_expired' })).toBeGreaterThan(expiredBefore);
  }, 15_000);
});
