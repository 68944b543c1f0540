// The CA's TLS port asks for client certificates but does not reject unverified ones at the handshake
// (grpc-js's certificate-provider credentials with requireClientCertificate off, so token callers need none):
// a renewal must then stand on a certificate that chains to the mesh root. A self-signed certificate naming
// another workload's SPIFFE ID (made by openssl, a real handshake) gets nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { ControlServer } from '../../xds/server.js';
import { createCertificate, makeCsr, readRoot, startCaControl, tempDir } from './helpers.js';

let base: string;
let control: ControlServer;
let root: string;

beforeAll(async () => {
  base = tempDir('pillion-ca-forged-');
  control = await startCaControl(join(base, 'ca'), { certTtlMs: 3600_000 });
  root = readRoot(join(base, 'ca'));
});

afterAll(async () => {
  await control.close();
  rmSync(base, { recursive: true, force: true });
});

describe('renewal by client certificate', () => {
  it('refuses a self-signed certificate that names a workload of the trust domain', async () => {
    writeFileSync(join(base, 'ext.cnf'), '[req]\ndistinguished_name=dn\n[dn]\n[ext]\nsubjectAltName=critical,URI:spiffe://example.org/ns/kube-system/sa/admin\nextendedKeyUsage=clientAuth,serverAuth\n');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(base, 'k.pem'), '-out', join(base, 'c.pem'), '-days', '1', '-subj', '/CN=forged', '-config', join(base, 'ext.cnf'), '-extensions', 'ext'], { stdio: 'ignore' });
    const { csrPem } = await makeCsr();
    const res = await createCertificate(`127.0.0.1:${control.securePort}`, { rootPem: root, csrPem, clientCert: { certPem: readFileSync(join(base, 'c.pem'), 'utf8'), keyPem: readFileSync(join(base, 'k.pem'), 'utf8') } });
    expect(res).toMatchObject({ ok: false, code: grpc.status.UNAUTHENTICATED });
  });
});
