// TLS parameters of the mTLS hop, against openssl on both sides (real handshakes): no TLS 1.2 renegotiation a client
// asks for (Envoy refuses it too: a new handshake, maybe with another certificate, on a connection whose identity
// was fixed by the first one), TLS 1.3 between sidecars, and
// for a TLS 1.2 peer only Envoy's default cipher suites (ECDHE with AES-GCM or ChaCha20-Poly1305): a peer that
// offers, or a server that accepts, only a CBC suite (ECDHE-ECDSA-AES128-SHA: SHA-1 MAC, no AEAD) finds no common
// cipher. Node's own default list took those, so the hop could be weaker than Envoy's.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import * as net from 'node:net';
import { freePort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import type { RunningProxy } from '../helpers/proxy.js';
import { startMeshProxy } from '../tls/mesh-proxy.js';
import { TestCa } from '../tls/test-ca.js';
import { negotiated as negotiatedWith } from '../tls/openssl-client.js';

const TD = 'spiffe://cluster.local/ns/default/sa';
let ca: TestCa;
let app: Backend;
let backend: RunningProxy;
let frontend: RunningProxy;
let sServer: ChildProcess | undefined;
let sServerPort: number;

beforeAll(async () => {
  ca = new TestCa();
  app = await startHttpBackend('app');
  backend = await startMeshProxy(
    `
services:
  - name: backend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
`,
    { service: 'backend', appPort: app.port, identity: { cert: ca.issue({ spiffeId: `${TD}/backend` }), caPem: ca.caPem } },
  );
  // An upstream "sidecar" that is openssl s_server with the right identity, TLS 1.2 and a CBC suite only.
  sServerPort = await freePort();
  const legacy = ca.issue({ spiffeId: `${TD}/legacy` });
  sServer = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${sServerPort}`, '-cert', legacy.certFile, '-key', legacy.keyFile, '-CAfile', ca.caFile, '-Verify', '1', '-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA', '-www', '-quiet'], { stdio: 'ignore' });
  await waitListening(sServerPort);
  frontend = await startMeshProxy(
    `
services:
  - name: frontend
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: legacy
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${sServerPort} }]
`,
    { service: 'frontend', identity: { cert: ca.issue({ spiffeId: `${TD}/frontend` }), caPem: ca.caPem } },
  );
}, 30_000);

afterAll(async () => {
  sServer?.kill();
  await Promise.all([frontend?.close(), backend?.close()]);
  await app?.close();
  ca?.close();
});

async function waitListening(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('openssl s_server did not listen');
}

/** `openssl s_client` against the backend sidecar's inbound listener: what it negotiated, '' if nothing. */
function negotiated(args: string[]): Promise<string> {
  return negotiatedWith(ca, `${TD}/frontend`, backend.port('inbound'), 'backend', args);
}

/**
 * An `openssl s_client` that, once connected, sends one of its commands (`R`: TLS 1.2 renegotiation, `k`: TLS 1.3
 * key update) and then a request: its output.
 */
function commandThenGet(version: '-tls1_2' | '-tls1_3', command: 'R' | 'k'): Promise<string> {
  const cert = ca.issue({ spiffeId: `${TD}/frontend` });
  return new Promise((resolve) => {
    const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${backend.port('inbound')}`, version, '-CAfile', ca.caFile, '-cert', cert.certFile, '-key', cert.keyFile]);
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      const first = !out.includes('Verify return code');
      out += String(d);
      // Once the handshake is done: renegotiate, then ask for a page.
      if (first && out.includes('Verify return code')) {
        child.stdin.write(`${command}\n`);
        setTimeout(() => child.stdin.write('GET / HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n\r\n'), 300);
      }
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += String(d)));
    const timer = setTimeout(() => child.kill(), 5_000);
    child.on('close', () => {
      clearTimeout(timer);
      resolve(out + err);
    });
    child.stdin.on('error', () => {});
  });
}

describe('TLS parameters of the mTLS hop', () => {
  it('inbound: a client that asks to renegotiate TLS 1.2 is closed, and the proxy serves on', async () => {
    const out = await commandThenGet('-tls1_2', 'R');
    expect(out).toContain('RENEGOTIATING');
    expect(out).not.toContain('HTTP/1.1 200');
    expect(await negotiated(['-tls1_2'])).toMatch(/^TLSv1\.2 ECDHE-ECDSA-/);
    // A TLS 1.3 key update is no renegotiation: the connection carries on.
    const updated = await commandThenGet('-tls1_3', 'k');
    expect(updated).toContain('KEYUPDATE');
    expect(updated).toContain('HTTP/1.1 200');
  });

  it('inbound: TLS 1.3 by default; TLS 1.2 with an AEAD ECDHE suite; no CBC suite', async () => {
    expect(await negotiated([])).toMatch(/^TLSv1\.3 TLS_/);
    expect(await negotiated(['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'])).toBe('TLSv1.2 ECDHE-ECDSA-AES128-GCM-SHA256');
    expect(await negotiated(['-tls1_2', '-cipher', 'ECDHE-ECDSA-CHACHA20-POLY1305'])).toBe('TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305');
    expect(await negotiated(['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-SHA'])).toBe('');
    expect(await negotiated(['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-SHA384'])).toBe('');
  });

  it('outbound: an upstream that takes only a CBC suite gets no connection (503), never a weak one', async () => {
    const res = await request(frontend.port('outbound'), { host: 'legacy:8080', path: '/' });
    expect(res.status).toBe(503);
  });
});
