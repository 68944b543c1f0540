// mTLS between two sidecars with real handshakes: the outbound of a frontend proxy originates mTLS to the
// inbound of backend proxies (STRICT) for HTTP/1.1, gRPC over HTTP/2 and TCP; the peer identity reaches the
// app in x-forwarded-client-cert; secure naming refuses an upstream with the wrong SPIFFE ID (503 peer_identity).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { freePort, startHttpBackend, startTcpEcho, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { echoClient, startEchoServer, type EchoServer } from '../helpers/grpc.js';
import type { RunningProxy } from '../helpers/proxy.js';
import { metricValue, setIdentity, startMeshProxy } from '../tls/mesh-proxy.js';
import { TestCa } from '../tls/test-ca.js';
import { ROOT_CA_SECRET, WORKLOAD_CERT_SECRET } from '../../src/tls/secrets.js';

const TD = 'spiffe://cluster.local/ns/default/sa';
let ca: TestCa;
let app: Backend;
let echo: EchoServer;
let tcpEcho: Backend;
let backend: RunningProxy;
let grpcSide: RunningProxy;
let db: RunningProxy;
let frontend: RunningProxy;
let egressPort: number;
let impostorEgressPort: number;

function serverMesh(): string {
  return `
services:
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: echo
    ports: [{ port: 9090, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: db
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
`;
}

function clientMesh(): string {
  return `
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    egress:
      - { localPort: ${egressPort}, service: db, port: 5432 }
      - { localPort: ${impostorEgressPort}, service: dbimpostor, port: 5432 }
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port('inbound')} }]
    policy: { retries: { attempts: 0 } }
  - name: impostor
    serviceAccount: payments
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port('inbound')} }]
  - name: expiring
    serviceAccount: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port('inbound')} }]
    policy: { retries: { attempts: 0 } }
  - name: fresh
    serviceAccount: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port('inbound')} }]
  - name: echo
    ports: [{ port: 9090, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: ${grpcSide.port('inbound')} }]
  - name: echoimpostor
    serviceAccount: payments
    ports: [{ port: 9090, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: ${grpcSide.port('inbound')} }]
  - name: freshecho
    serviceAccount: echo
    ports: [{ port: 9090, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: ${grpcSide.port('inbound')} }]
  - name: db
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${db.port('inbound')} }]
  - name: dbimpostor
    serviceAccount: payments
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: ${db.port('inbound')} }]
`;
}

beforeAll(async () => {
  ca = new TestCa();
  app = await startHttpBackend('app');
  echo = await startEchoServer('echo');
  tcpEcho = await startTcpEcho();
  const id = (sa: string) => ({ cert: ca.issue({ spiffeId: `${TD}/${sa}`, cn: sa }), caPem: ca.caPem });
  backend = await startMeshProxy(serverMesh(), { service: 'backend', appPort: app.port, identity: id('backend') });
  grpcSide = await startMeshProxy(serverMesh(), { service: 'echo', appPort: echo.port, identity: id('echo') });
  db = await startMeshProxy(serverMesh(), { service: 'db', appPort: tcpEcho.port, identity: id('db') });
  egressPort = await freePort();
  impostorEgressPort = await freePort();
  frontend = await startMeshProxy(clientMesh(), { service: 'frontend', identity: id('frontend') });
}, 30_000);

afterAll(async () => {
  await Promise.all([frontend?.close(), backend?.close(), grpcSide?.close(), db?.close()]);
  await Promise.all([app?.close(), echo?.close(), tcpEcho?.close()]);
  ca?.close();
});

describe('mTLS STRICT between two sidecars', () => {
  it('carries HTTP/1.1 and hands the peer identity to the app in XFCC (a client XFCC is dropped)', async () => {
    const res = await request(frontend.port('outbound'), { host: 'backend:8080', path: '/hello', headers: { 'x-forwarded-client-cert': 'URI=spiffe://evil/ns/x/sa/y' } });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body) as { headers: Record<string, string> };
    const xfcc = seen.headers['x-forwarded-client-cert']!;
    expect(xfcc).toMatch(new RegExp(`^By=${TD}/backend;Hash=[0-9a-f]{64};URI=${TD}/frontend$`));
    expect(await metricValue(backend.proxy, 'pillion_downstream_connections_transport_total', { transport: 'tls' })).toBeGreaterThan(0);
  });

  it('carries gRPC over HTTP/2', async () => {
    const client = echoClient(frontend.port('outbound'), 'echo:9090');
    const reply = await new Promise<{ text: string }>((resolve, reject) =>
      client.Unary({ text: 'hi' }, (err: Error | null, r: { text: string }) => (err ? reject(err) : resolve(r))),
    );
    client.close();
    expect(reply.text).toBe('echo:hi');
  });

  it('carries TCP, half-close included (the reply to a request sent before FIN still arrives)', async () => {
    const sock = net.connect({ port: egressPort, host: '127.0.0.1', allowHalfOpen: true });
    const got = await new Promise<string>((resolve, reject) => {
      let data = '';
      sock.on('data', (d) => (data += String(d)));
      sock.on('end', () => resolve(data));
      sock.on('error', reject);
      sock.end('ping');
    });
    sock.destroy();
    expect(got).toBe('ping');
  });

  it('answers 503 peer_identity when the upstream proves another SPIFFE ID than the service account', async () => {
    const res = await request(frontend.port('outbound'), { host: 'impostor:8080', path: '/' });
    expect(res.status).toBe(503);
    expect(res.headers['x-pillion-reason']).toBe('peer_identity');
    expect(await metricValue(frontend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'outbound', reason: 'peer_identity' })).toBeGreaterThan(0);
  });

  it('the same for an HTTP/2 (gRPC) upstream: 503 peer_identity, not connect_failure', async () => {
    const res = await request(frontend.port('outbound'), { host: 'echoimpostor:9090', path: '/' });
    expect(res.status).toBe(503);
    expect(res.headers['x-pillion-reason']).toBe('peer_identity');
  });

  it('closes a TCP connection whose upstream proves another SPIFFE ID, with nothing passed through', async () => {
    const sock = net.connect(impostorEgressPort, '127.0.0.1');
    sock.on('error', () => {});
    const got = await new Promise<string>((resolve) => {
      let data = '';
      sock.on('data', (d) => (data += String(d)));
      sock.on('close', () => resolve(data));
      sock.write('secret');
    });
    expect(got).toBe('');
    expect(await metricValue(frontend.proxy, 'pillion_local_replies_total', { reason: 'peer_identity' })).toBeGreaterThan(0);
  });

  it('refuses an upstream whose certificate has expired (503, counted outbound as certificate_expired)', async () => {
    const saved = backend.proxy.secrets.get(WORKLOAD_CERT_SECRET)!;
    setIdentity(backend.proxy, ca.issueExpired(`${TD}/backend`), ca.caPem);
    try {
      const res = await request(frontend.port('outbound'), { host: 'expiring:8080', path: '/' });
      expect(res.status).toBe(503);
      expect(res.headers['x-pillion-reason']).toBe('connect_failure');
      expect(await metricValue(frontend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'outbound', reason: 'certificate_expired' })).toBe(1);
    } finally {
      backend.proxy.secrets.set(WORKLOAD_CERT_SECRET, saved);
    }
  });

  it('refuses plaintext on a STRICT inbound port', async () => {
    const before = await metricValue(backend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'inbound', reason: 'not_tls' });
    const sock = net.connect(backend.port('inbound'), '127.0.0.1');
    sock.on('error', () => {});
    const got = await new Promise<string>((resolve) => {
      let data = '';
      sock.on('data', (d) => (data += String(d)));
      sock.on('close', () => resolve(data));
      sock.write('GET / HTTP/1.1\r\nhost: backend\r\n\r\n');
    });
    expect(got).not.toContain('HTTP/1.1 200');
    expect(app.hits).toBeGreaterThan(0);
    expect(await metricValue(backend.proxy, 'pillion_tls_handshake_failures_total', { direction: 'inbound', reason: 'not_tls' })).toBe(before + 1);
  });

  it('answers 503 tls_not_ready without its trust bundle, never plaintext, and recovers when it is back', async () => {
    // A cluster no request used yet: connections already open would carry on (rotation semantics).
    const saved = frontend.proxy.secrets.get(ROOT_CA_SECRET)!;
    frontend.proxy.secrets.set(ROOT_CA_SECRET, undefined);
    try {
      const res = await request(frontend.port('outbound'), { host: 'fresh:8080', path: '/' });
      expect(res.status).toBe(503);
      expect(res.headers['x-pillion-reason']).toBe('tls_not_ready');
    } finally {
      frontend.proxy.secrets.set(ROOT_CA_SECRET, saved);
    }
    const res = await request(frontend.port('outbound'), { host: 'fresh:8080', path: '/' });
    expect(res.status).toBe(200);
  });

  it('the same for an HTTP/2 (gRPC) upstream: 503 tls_not_ready, then service once the bundle is back', async () => {
    const saved = frontend.proxy.secrets.get(ROOT_CA_SECRET)!;
    frontend.proxy.secrets.set(ROOT_CA_SECRET, undefined);
    try {
      const res = await request(frontend.port('outbound'), { host: 'freshecho:9090', path: '/' });
      expect(res.status).toBe(503);
      expect(res.headers['x-pillion-reason']).toBe('tls_not_ready');
    } finally {
      frontend.proxy.secrets.set(ROOT_CA_SECRET, saved);
    }
    const client = echoClient(frontend.port('outbound'), 'freshecho:9090');
    try {
      const reply = await new Promise<{ text: string }>((resolve, reject) =>
        client.Unary({ text: 'back' }, (err: Error | null, r: { text: string }) => (err ? reject(err) : resolve(r))),
      );
      expect(reply.text).toContain('back');
    } finally {
      client.close();
    }
  });
});

