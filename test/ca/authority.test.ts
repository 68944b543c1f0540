// Where the mesh CA's root comes from: created on first start (ECDSA P-256, key file 0600) and the same root after a
// restart; an operator's root (made with openssl, SEC1 key) used as given; an operator's intermediate (RSA, under
// the operator's root) signing workload certificates whose chain openssl verifies up to that root.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadOrCreateTokenKey, mintToken } from '../../xds/ca/token.js';
import { createCertificate, makeCsr, opensslVerify, readRoot, run, startCaControl, tempDir } from './helpers.js';

let base: string;

beforeAll(() => {
  base = tempDir('pillion-ca-root-');
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

async function issue(caDir: string, securePort: number, rootPem: string): Promise<string[]> {
  const token = mintToken(loadOrCreateTokenKey(caDir), { namespace: 'default', serviceAccount: 'api' }, 60_000, Date.now());
  const res = await createCertificate(`127.0.0.1:${securePort}`, { rootPem, token, csrPem: (await makeCsr()).csrPem });
  if (!res.ok) throw new Error(res.details);
  return res.chain;
}

describe('mesh CA root', () => {
  it('is created on first start with its key file mode 0600, and the same root is used after a restart', async () => {
    const caDir = join(base, 'created');
    const first = await startCaControl(caDir);
    const root = readRoot(caDir);
    try {
      expect(statSync(join(caDir, 'root-key.pem')).mode & 0o777).toBe(0o600);
      expect(statSync(join(caDir, 'token-key')).mode & 0o777).toBe(0o600);
      const cert = new X509Certificate(root);
      expect(cert.ca).toBe(true);
      expect(cert.subject).toContain('O=example.org');
      expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
      expect((await issue(caDir, first.securePort, root)).at(-1)).toBe(root);
    } finally {
      await first.close();
    }
    const key = readFileSync(join(caDir, 'root-key.pem'), 'utf8');
    const second = await startCaControl(caDir);
    try {
      expect(readRoot(caDir)).toBe(root);
      expect(readFileSync(join(caDir, 'root-key.pem'), 'utf8')).toBe(key);
      const chain = await issue(caDir, second.securePort, root);
      expect(new X509Certificate(chain[0]!).verify(new X509Certificate(root).publicKey)).toBe(true);
    } finally {
      await second.close();
    }
  });

  it('uses an operator-supplied root (cert and key files made by openssl)', async () => {
    const caDir = join(base, 'operator-root');
    mkdirSync(caDir, { recursive: true });
    await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', join(caDir, 'root-key.pem')]);
    await run('openssl', [
      'req', '-x509', '-new', '-key', join(caDir, 'root-key.pem'), '-subj', '/O=Operator/CN=Operator root', '-days', '30',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', join(caDir, 'root-cert.pem'),
    ]);
    const root = readRoot(caDir);
    const control = await startCaControl(caDir);
    try {
      const chain = await issue(caDir, control.securePort, root);
      expect(chain.at(-1)).toBe(root);
      expect(new X509Certificate(chain[0]!).issuer).toContain('CN=Operator root');
      const verdict = await opensslVerify(base, root, chain[0]!);
      expect(verdict.out).toContain('OK');
    } finally {
      await control.close();
    }
    expect(readRoot(caDir)).toBe(root);
  });

  it('signs with an operator-supplied intermediate: the chain carries it and verifies up to the root', async () => {
    const caDir = join(base, 'intermediate');
    mkdirSync(caDir, { recursive: true });
    const p = (f: string): string => join(caDir, f);
    await run('openssl', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', p('root-key.pem')]);
    await run('openssl', [
      'req', '-x509', '-new', '-key', p('root-key.pem'), '-subj', '/CN=Offline root', '-days', '30',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', p('root-cert.pem'),
    ]);
    await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', p('ca-key.pem')]);
    await run('openssl', ['req', '-new', '-key', p('ca-key.pem'), '-subj', '/CN=Cluster intermediate', '-out', p('ca.csr')]);
    writeFileSync(p('ext.cnf'), 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n');
    await run('openssl', ['x509', '-req', '-in', p('ca.csr'), '-CA', p('root-cert.pem'), '-CAkey', p('root-key.pem'), '-CAcreateserial', '-days', '30', '-extfile', p('ext.cnf'), '-out', p('ca-cert.pem')]);
    writeFileSync(p('cert-chain.pem'), readFileSync(p('ca-cert.pem'), 'utf8') + readFileSync(p('root-cert.pem'), 'utf8'));
    // The offline root's key does not belong on the cluster: the CA must not need it.
    rmSync(p('root-key.pem'));
    const root = readRoot(caDir);
    const intermediate = readFileSync(p('ca-cert.pem'), 'utf8');
    const control = await startCaControl(caDir);
    try {
      const chain = await issue(caDir, control.securePort, root);
      expect(chain).toHaveLength(3);
      expect(new X509Certificate(chain[1]!).fingerprint256).toBe(new X509Certificate(intermediate).fingerprint256);
      expect(new X509Certificate(chain[0]!).issuer).toBe('CN=Cluster intermediate');
      expect((await opensslVerify(base, root, chain[0]!, chain[1]!)).out).toContain('OK');
      // Without the intermediate the leaf does not verify: the chain really runs through it.
      expect((await opensslVerify(base, root, chain[0]!)).code).not.toBe(0);
    } finally {
      await control.close();
    }
  });

  it('refuses to start with a root certificate but no key, saying what to do', async () => {
    const caDir = join(base, 'half');
    mkdirSync(caDir, { recursive: true });
    writeFileSync(join(caDir, 'root-cert.pem'), readRoot(join(base, 'created')));
    await expect(startCaControl(caDir)).rejects.toThrow(/root-cert\.pem without root-key\.pem/);
  });
});
