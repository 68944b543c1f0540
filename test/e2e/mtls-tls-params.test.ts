// CommonTlsContext.tls_params from xDS, enforced on real handshakes (openssl s_client against the inbound mTLS
// listener, and a sidecar's outbound against it): a minimum of TLS 1.3 refuses TLS 1.2 clients, a maximum of TLS 1.2
// caps the version, a TLS 1.2 cipher suite list and an ECDHE curve list leave out what they do not name.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { TestCa } from '../tls/test-ca.js';
import { negotiated as negotiatedWith } from '../tls/openssl-client.js';

const TD = 'spiffe://cluster.local/ns/default/sa';
const MESH = (appPort: number) => `
services:
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${appPort} }]
`;
let ca: TestCa;
let app: Backend;
const proxies: RunningProxy[] = [];

/** A sidecar for `backend` with its workload identity and `tlsParams` on every TLS context it has. */
async function sidecar(service: string, tlsParams: Record<string, unknown> | undefined, mesh = MESH(1)): Promise<RunningProxy> {
  const p = await startProxy(mesh, {
    service,
    appPort: app.port,
    identity: { cert: ca.issue({ spiffeId: `${TD}/${service}` }), caPem: ca.caPem },
    ...(tlsParams === undefined ? {} : { tlsParams }),
    proxyOptions: { drainTimeoutMs: 1_000 },
  });
  proxies.push(p);
  return p;
}

beforeAll(async () => {
  ca = new TestCa();
  app = await startHttpBackend('app');
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.close()));
  await app?.close();
  ca?.close();
});

/** `openssl s_client` with a mesh certificate: 'TLSv1.x CIPHER' as negotiated, '' when the handshake failed. */
function negotiated(port: number, args: string[]): Promise<string> {
  return negotiatedWith(ca, `${TD}/frontend`, port, 'backend', args);
}

describe('tls_params on the mTLS hop', () => {
  it('tls_minimum_protocol_version TLSv1_3: a TLS 1.2 client gets no handshake, a TLS 1.3 one does', async () => {
    const port = (await sidecar('backend', { tls_minimum_protocol_version: 'TLSv1_3' })).port('inbound');
    expect(await negotiated(port, ['-tls1_2'])).toBe('');
    expect(await negotiated(port, ['-tls1_3'])).toMatch(/^TLSv1\.3 TLS_/);
  });

  it('tls_maximum_protocol_version TLSv1_2: a client offering TLS 1.3 gets TLS 1.2', async () => {
    const port = (await sidecar('backend', { tls_maximum_protocol_version: 'TLSv1_2' })).port('inbound');
    expect(await negotiated(port, [])).toMatch(/^TLSv1\.2 ECDHE-/);
  });

  it('cipher_suites: TLS 1.2 takes only the suites named; TLS 1.3 is unaffected', async () => {
    const port = (await sidecar('backend', { cipher_suites: ['ECDHE-ECDSA-AES256-GCM-SHA384'] })).port('inbound');
    expect(await negotiated(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'])).toBe('');
    expect(await negotiated(port, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384'])).toBe('TLSv1.2 ECDHE-ECDSA-AES256-GCM-SHA384');
    expect(await negotiated(port, ['-tls1_3'])).toMatch(/^TLSv1\.3 TLS_/);
  });

  it('ecdh_curves: a client offering only a curve not named gets no handshake', async () => {
    const port = (await sidecar('backend', { ecdh_curves: ['P-384'] })).port('inbound');
    expect(await negotiated(port, ['-groups', 'X25519'])).toBe('');
    expect(await negotiated(port, ['-groups', 'P-384'])).toMatch(/^TLSv1\.3 /);
  });

  it('outbound: a sidecar whose clusters say TLSv1_3 minimum cannot reach a peer capped at TLS 1.2 (503), and reaches one that is not', async () => {
    const capped = await sidecar('backend', { tls_maximum_protocol_version: 'TLSv1_2' });
    const open = await sidecar('backend', undefined);
    const client = (peerPort: number) =>
      sidecar('frontend', { tls_minimum_protocol_version: 'TLSv1_3' }, `
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${peerPort} }]
`);
    const toCapped = await client(capped.port('inbound'));
    expect((await request(toCapped.port('outbound'), { host: 'backend:8080', path: '/' })).status).toBe(503);
    const toOpen = await client(open.port('inbound'));
    expect((await request(toOpen.port('outbound'), { host: 'backend:8080', path: '/' })).status).toBe(200);
  });
});
