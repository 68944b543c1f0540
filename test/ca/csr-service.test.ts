// The certificate service over real TLS gRPC: a CSR with a valid token gets a certificate for exactly its
// identity, chained to the mesh root (checked by Node and by openssl); every other request is refused with a
// status and a message that say why, and counted by reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { ControlServer } from '../../xds/server.js';
import { loadOrCreateTokenKey, mintToken } from '../../xds/ca/token.js';
import { createCertificate, makeCsr, opensslVerify, readRoot, run, startCaControl, tempDir } from './helpers.js';

let base: string;
let caDir: string;
let control: ControlServer;
let root: string;
let address: string;
let token: string;

beforeAll(async () => {
  base = tempDir('pillion-ca-svc-');
  caDir = join(base, 'ca');
  control = await startCaControl(caDir, { certTtlMs: 2 * 3600_000 });
  root = readRoot(caDir);
  address = `127.0.0.1:${control.securePort}`;
  token = mintToken(loadOrCreateTokenKey(caDir), { namespace: 'shop', serviceAccount: 'web' }, 3600_000, Date.now());
});

afterAll(async () => {
  await control.close();
  rmSync(base, { recursive: true, force: true });
});

async function metric(name: string): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${control.adminPort}/metrics`)).text();
  return text.split('\n').filter((l) => l.startsWith(name)).join('\n');
}

describe('CreateCertificate', () => {
  it('issues a certificate with the SPIFFE URI SAN of the token, chained to the root (Node and openssl agree)', async () => {
    const { csrPem } = await makeCsr();
    const res = await createCertificate(address, { rootPem: root, token, csrPem });
    if (!res.ok) throw new Error(res.details);
    expect(res.chain).toHaveLength(2);
    const leaf = new X509Certificate(res.chain[0]!);
    const rootCert = new X509Certificate(res.chain[1]!);
    expect(rootCert.fingerprint256).toBe(new X509Certificate(root).fingerprint256);
    expect(leaf.subjectAltName).toBe('URI:spiffe://example.org/ns/shop/sa/web');
    expect(leaf.ca).toBe(false);
    expect(leaf.verify(rootCert.publicKey)).toBe(true);
    expect(leaf.checkIssued(rootCert)).toBe(true);
    const life = Date.parse(leaf.validTo) - Date.now();
    expect(life).toBeGreaterThan(2 * 3600_000 - 120_000);
    expect(life).toBeLessThanOrEqual(2 * 3600_000);
    const openssl = await opensslVerify(base, root, res.chain[0]!);
    expect(openssl.out).toContain('OK');
    expect(openssl.code).toBe(0);
    expect(await metric('pillion_control_certificates_issued_total{auth="token"}')).toMatch(/ 1$/);
  });

  it('accepts a CSR that names the caller itself', async () => {
    const { csrPem } = await makeCsr(['spiffe://example.org/ns/shop/sa/web']);
    const res = await createCertificate(address, { rootPem: root, token, csrPem });
    expect(res.ok).toBe(true);
  });

  it('refuses a CSR for another identity with PERMISSION_DENIED, naming both', async () => {
    const { csrPem } = await makeCsr(['spiffe://example.org/ns/shop/sa/admin']);
    const res = await createCertificate(address, { rootPem: root, token, csrPem });
    expect(res.ok).toBe(false);
    if (res.ok) return;
    expect(res.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(res.details).toContain('spiffe://example.org/ns/shop/sa/web');
    expect(res.details).toContain('spiffe://example.org/ns/shop/sa/admin');
    expect(await metric('pillion_control_certificates_refused_total{reason="identity_mismatch"}')).toMatch(/ 1$/);
  });

  it('refuses a forged token (signed with another key) and a tampered one with UNAUTHENTICATED', async () => {
    const { csrPem } = await makeCsr();
    const forged = mintToken(Buffer.alloc(32, 7), { namespace: 'shop', serviceAccount: 'web' }, 3600_000, Date.now());
    const res = await createCertificate(address, { rootPem: root, token: forged, csrPem });
    expect(res).toMatchObject({ ok: false, code: grpc.status.UNAUTHENTICATED });
    expect(!res.ok && res.details).toContain('signature does not verify');
    // Same MAC, payload swapped for another identity's.
    const [prefix, , mac] = token.split('.');
    const other = Buffer.from(JSON.stringify({ ns: 'shop', sa: 'admin', iat: 1, exp: 4_000_000_000 })).toString('base64url');
    const tampered = await createCertificate(address, { rootPem: root, token: `${prefix}.${other}.${mac}`, csrPem });
    expect(tampered).toMatchObject({ ok: false, code: grpc.status.UNAUTHENTICATED });
    expect(await metric('pillion_control_certificates_refused_total{reason="token_bad_signature"}')).toMatch(/ 2$/);
  });

  it('refuses an expired token with UNAUTHENTICATED, saying it expired', async () => {
    const { csrPem } = await makeCsr();
    const expired = mintToken(loadOrCreateTokenKey(caDir), { namespace: 'shop', serviceAccount: 'web' }, 1000, Date.now() - 10_000);
    const res = await createCertificate(address, { rootPem: root, token: expired, csrPem });
    expect(res).toMatchObject({ ok: false, code: grpc.status.UNAUTHENTICATED });
    expect(!res.ok && res.details).toMatch(/expired at .*pillion token/);
    expect(await metric('pillion_control_certificates_refused_total{reason="token_expired"}')).toMatch(/ 1$/);
  });

  it('refuses a request with no credentials, and a CSR that is not one', async () => {
    const { csrPem } = await makeCsr();
    const none = await createCertificate(address, { rootPem: root, csrPem });
    expect(none).toMatchObject({ ok: false, code: grpc.status.UNAUTHENTICATED });
    expect(!none.ok && none.details).toContain('no bootstrap token');
    const junk = await createCertificate(address, { rootPem: root, token, csrPem: 'x'.repeat(20_000) });
    expect(junk).toMatchObject({ ok: false, code: grpc.status.INVALID_ARGUMENT });
    expect(!junk.ok && junk.details).toContain('at most 8192');
  });

  it('renews with the workload certificate as TLS client certificate, no token needed', async () => {
    const first = await makeCsr();
    const issued = await createCertificate(address, { rootPem: root, token, csrPem: first.csrPem });
    if (!issued.ok) throw new Error(issued.details);
    const second = await makeCsr();
    const renewed = await createCertificate(address, { rootPem: root, csrPem: second.csrPem, clientCert: { certPem: issued.chain[0]!, keyPem: first.keyPem } });
    if (!renewed.ok) throw new Error(renewed.details);
    expect(new X509Certificate(renewed.chain[0]!).subjectAltName).toBe('URI:spiffe://example.org/ns/shop/sa/web');
    expect(await metric('pillion_control_certificates_issued_total{auth="client_cert"}')).toMatch(/ 1$/);
  });

  it('is not served on the plaintext port (a token never crosses the network in clear)', async () => {
    const { csrPem } = await makeCsr();
    const res = await createCertificate(`127.0.0.1:${control.port}`, { token, csrPem });
    expect(res).toMatchObject({ ok: false, code: grpc.status.UNIMPLEMENTED });
  });
  // Last: its refusal moves the refusal counter the tests above read.
  it('takes a CSR written by openssl req as an independent peer: its own identity issued, another refused', async () => {
    const dir = join(base, 'openssl-csr');
    mkdirSync(dir, { recursive: true });
    const key = join(dir, 'key.pem');
    await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key]);
    const csrFor = async (uri: string): Promise<string> => {
      const out = join(dir, 'req.csr');
      await run('openssl', ['req', '-new', '-key', key, '-subj', '/O=openssl', '-addext', `subjectAltName=URI:${uri}`, '-out', out]);
      return readFileSync(out, 'utf8');
    };
    const mine = await createCertificate(address, { rootPem: root, token, csrPem: await csrFor('spiffe://example.org/ns/shop/sa/web') });
    if (!mine.ok) throw new Error(mine.details);
    expect(new X509Certificate(mine.chain[0]!).subjectAltName).toBe('URI:spiffe://example.org/ns/shop/sa/web');
    expect((await opensslVerify(base, root, mine.chain[0]!)).code).toBe(0);
    const theirs = await createCertificate(address, { rootPem: root, token, csrPem: await csrFor('spiffe://example.org/ns/shop/sa/admin') });
    expect(theirs.ok).toBe(false);
    if (!theirs.ok) expect(theirs.code).toBe(grpc.status.PERMISSION_DENIED);
  });
});
