// Zero trust end to end, as real processes: `pillion control --ca-dir` is the mesh CA, each sidecar gets its own
// certificate with a token (`pillion token`), the sidecars talk mTLS (STRICT, the default), and the backend's
// authorization admits the frontend's SPIFFE ID and refuses another identity with 403 unauthorized. The app sees
// who called in x-forwarded-client-cert.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { NODE_FLAGS } from '../../src/cli/node-flags.js';
import { freePort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { startMeshWithCa, type MeshWithCa } from '../helpers/mesh-ca.js';
import { MAIN } from '../helpers/process.js';

let mesh: MeshWithCa;
let app: Backend;
let backendInbound: number;
const outbound = new Map<string, number>();
const admin = new Map<string, number>();

beforeAll(async () => {
  app = await startHttpBackend('app');
  backendInbound = await freePort();
  mesh = await startMeshWithCa(`services:
  - name: frontend
    namespace: shop
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: intruder
    namespace: shop
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: backend
    namespace: shop
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backendInbound} }]
    authorization:
      allow: [{ name: frontend-only, principals: ["spiffe://cluster.local/ns/shop/sa/frontend"] }]
`);
  const start = async (service: string, extra: string[]): Promise<void> => {
    const s = await mesh.sidecar(service, 'shop', extra);
    admin.set(service, s.admin);
    outbound.set(service, s.outbound);
  };
  await start('backend', ['--app-port', String(app.port), '--inbound-port', String(backendInbound)]);
  await start('frontend', ['--inbound-port', '0']);
  await start('intruder', ['--inbound-port', '0']);
}, 60_000);

afterAll(async () => {
  await mesh.close();
  await app.close();
});

describe('zero trust with the mesh CA (processes)', () => {
  it('carries the frontend to the backend over mTLS, and the app sees the caller in x-forwarded-client-cert', async () => {
    const r = await request(outbound.get('frontend')!, { host: 'backend.shop', path: '/hello' });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body) as { headers: Record<string, string> };
    expect(seen.headers['x-forwarded-client-cert']).toMatch(/By=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/backend;Hash=[0-9a-f]{64};URI=spiffe:\/\/cluster\.local\/ns\/shop\/sa\/frontend/);
    // The backend's sidecar counts requests by the caller's identity.
    const metrics = await (await fetch(`http://127.0.0.1:${admin.get('backend')!}/metrics`)).text();
    expect(metrics).toMatch(/pillion_downstream_peer_requests_total\{peer="spiffe:\/\/cluster\.local\/ns\/shop\/sa\/frontend",protocol="http"\} [1-9]/);
  });

  it('pillion ctl certs shows the sidecar\'s workload certificate and the mesh root', async () => {
    const out = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, [...NODE_FLAGS, MAIN, 'ctl', 'certs', '--admin', `127.0.0.1:${admin.get('backend')!}`], (err, stdout) => (err ? reject(err) : resolve(stdout))),
    );
    expect(out.split('\n')[0]).toMatch(/^SECRET\s+KIND\s+SPIFFE ID\s+SUBJECT\s+NOT AFTER\s+SERIAL$/);
    expect(out).toMatch(/default\s+tls_certificate\s+spiffe:\/\/cluster\.local\/ns\/shop\/sa\/backend\s+-\s+\S+Z \(in \d+h\)\s+[0-9A-F]+\n/);
    expect(out).toMatch(/ROOTCA\s+validation_context\s+-\s+O=cluster\.local, CN=Pillion mesh root CA/);
  });

  it('refuses another mesh identity by policy: 403 unauthorized', async () => {
    const before = app.hits;
    const r = await request(outbound.get('intruder')!, { host: 'backend.shop', path: '/hello' });
    expect(r.status).toBe(403);
    expect(r.headers['x-pillion-reason']).toBe('unauthorized');
    expect(app.hits).toBe(before);
  });

  it('refuses a caller without mTLS at the STRICT inbound port', async () => {
    const outcome = await request(backendInbound, { host: 'backend.shop', path: '/hello' }).then(
      (r) => `status ${r.status}`,
      () => 'refused',
    );
    expect(outcome).toBe('refused');
  });
});
