// Which client certificates name a workload: an X.509-SVID has exactly one URI SAN, a valid SPIFFE ID. A
// certificate from the mesh's own trust bundle whose URI only looks like one (dot or empty segments, a trailing
// slash, a query, a percent-escape, an uppercase trust domain) or that carries a second URI SAN is refused at the
// handshake as no_spiffe_id, over real handshakes with `openssl s_client`; before, `/ns/prod/../default/sa/x` met a
// `namespaces: [prod]` allow rule (a principal-name prefix).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import type { RunningProxy } from '../helpers/proxy.js';
import { metricValue, startMeshProxy } from '../tls/mesh-proxy.js';
import { TestCa } from '../tls/test-ca.js';

let ca: TestCa;
let app: Backend;
let backend: RunningProxy;

beforeAll(async () => {
  ca = new TestCa();
  app = await startHttpBackend('app');
  backend = await startMeshProxy(
    `
services:
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    authorization:
      allow:
        - { name: prod, namespaces: [prod] }
`,
    { service: 'backend', appPort: app.port, identity: { cert: ca.issue({ spiffeId: 'spiffe://cluster.local/ns/default/sa/backend' }), caPem: ca.caPem } },
  );
}, 30_000);

afterAll(async () => {
  await backend?.close();
  await app?.close();
  ca?.close();
});

/** The first line of the answer to one GET through `openssl s_client` with a certificate for `uriSans`; '' if refused. */
function statusWith(uriSans: string): Promise<string> {
  const cert = ca.issue({ spiffeId: uriSans });
  return new Promise((resolve) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${backend.port('inbound')}`, '-quiet', '-CAfile', ca.caFile, '-cert', cert.certFile, '-key', cert.keyFile]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += String(d)));
    child.stderr.on('data', () => {});
    const timer = setTimeout(() => child.kill(), 5_000);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out.split('\r\n')[0] ?? '');
    });
    child.stdin.on('error', () => {});
    child.stdin.write('GET / HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n\r\n');
  });
}

describe('client certificates that are not X.509-SVIDs', () => {
  it('admits a valid SPIFFE ID of the namespace the rule names', async () => {
    expect(await statusWith('spiffe://cluster.local/ns/prod/sa/x')).toBe('HTTP/1.1 200 OK');
  });

  it('refuses a malformed SPIFFE ID instead of matching it by prefix, and one with a second URI SAN', async () => {
    const before = await metricValue(backend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'inbound', reason: 'no_spiffe_id' });
    const odd = [
      'spiffe://cluster.local/ns/prod/../default/sa/frontend',
      'spiffe://cluster.local/ns/prod/./sa/x',
      'spiffe://cluster.local/ns/prod//sa/x',
      'spiffe://cluster.local/ns/prod/sa/x/',
      'spiffe://cluster.local/ns/prod/sa/x?admin=1',
      'spiffe://cluster.local/ns/prod/sa/%78',
      'spiffe://Cluster.local/ns/prod/sa/x',
      'spiffe://cluster.local:443/ns/prod/sa/x',
      'spiffe://cluster.local/ns/prod/sa/x,URI:https://x.example/',
    ];
    for (const id of odd) expect(await statusWith(id), id).toBe('');
    expect(await metricValue(backend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'inbound', reason: 'no_spiffe_id' })).toBe(before + odd.length);
  }, 30_000);

  it('refuses a CA certificate as a workload certificate (an X.509-SVID leaf has CA:FALSE)', async () => {
    const before = await metricValue(backend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'inbound', reason: 'no_spiffe_id' });
    // TestCa writes the SAN into an openssl extension file; the next lines make it a CA that can sign.
    expect(await statusWith('spiffe://cluster.local/ns/prod/sa/x\nbasicConstraints=critical,CA:TRUE\nkeyUsage=digitalSignature,keyCertSign')).toBe('');
    expect(await metricValue(backend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'inbound', reason: 'no_spiffe_id' })).toBe(before + 1);
  });
});
