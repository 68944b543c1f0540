// Shared pieces of the mesh CA tests: a control server with a CA on port 0, a real TLS gRPC call to
// CreateCertificate, CSRs made as any client would, and `openssl verify` as an independent judge of chains.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startControlServer, type ControlServer } from '../../xds/server.js';
import { certificateService, type CreateCertificateResponse } from '../../src/tls/ca-proto.js';
import { EC_P256, generateKeyPair, privateKeyPem } from '../../src/tls/keys.js';
import { x509 } from '../../src/tls/x509.js';

export const MESH = `trustDomain: example.org
services:
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
`;

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export async function startCaControl(caDir: string, opts: { certTtlMs?: number; securePort?: number } = {}): Promise<ControlServer> {
  const configFile = join(caDir, '..', `${caDir.split('/').pop()}-mesh.yaml`);
  writeFileSync(configFile, MESH);
  return startControlServer({
    configFile,
    port: 0,
    adminPort: 0,
    ca: { dir: caDir, securePort: opts.securePort ?? 0, certTtlMs: opts.certTtlMs ?? 3600_000 },
  });
}

/** A CSR for a fresh P-256 key, asking for `uris` (none: let the CA name it). */
export async function makeCsr(uris: string[] = []): Promise<{ csrPem: string; keyPem: string }> {
  const keys = await generateKeyPair();
  const extensions = uris.length > 0 ? [new x509.SubjectAlternativeNameExtension(uris.map((value) => ({ type: 'url' as const, value })))] : [];
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: EC_P256, extensions });
  return { csrPem: csr.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

export type CallResult = { ok: true; chain: string[] } | { ok: false; code: grpc.status; details: string };

type Stub = grpc.Client & {
  CreateCertificate(req: object, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: CreateCertificateResponse) => void): void;
};

export async function createCertificate(
  address: string,
  opts: { rootPem?: string; token?: string; csrPem: string; clientCert?: { certPem: string; keyPem: string } },
): Promise<CallResult> {
  const credentials =
    opts.rootPem === undefined
      ? grpc.credentials.createInsecure()
      : opts.clientCert
        ? grpc.credentials.createSsl(Buffer.from(opts.rootPem), Buffer.from(opts.clientCert.keyPem), Buffer.from(opts.clientCert.certPem))
        : grpc.credentials.createSsl(Buffer.from(opts.rootPem));
  const Ctor = certificateService() as unknown as new (a: string, c: grpc.ChannelCredentials) => Stub;
  const client = new Ctor(address, credentials);
  const md = new grpc.Metadata();
  if (opts.token !== undefined) md.set('authorization', `Bearer ${opts.token}`);
  try {
    return await new Promise<CallResult>((resolve) =>
      client.CreateCertificate({ csr: opts.csrPem }, md, { deadline: Date.now() + 5000 }, (err, res) =>
        resolve(err ? { ok: false, code: err.code, details: err.details } : { ok: true, chain: res?.cert_chain ?? [] }),
      ),
    );
  } finally {
    client.close();
  }
}

export function readRoot(caDir: string): string {
  return readFileSync(join(caDir, 'root-cert.pem'), 'utf8');
}

/** `openssl verify`: exit 0 and "OK" when `leafPem` chains to `rootPem` (through `untrusted`, if given). */
export function opensslVerify(dir: string, rootPem: string, leafPem: string, untrusted?: string): Promise<{ code: number; out: string }> {
  const root = join(dir, `v-root-${Math.random().toString(36).slice(2)}.pem`);
  const leaf = `${root}.leaf`;
  writeFileSync(root, rootPem);
  writeFileSync(leaf, leafPem);
  const args = ['verify', '-CAfile', root, '-purpose', 'sslclient'];
  if (untrusted !== undefined) {
    writeFileSync(`${root}.mid`, untrusted);
    args.push('-untrusted', `${root}.mid`);
  }
  args.push(leaf);
  return new Promise((resolve) =>
    execFile('openssl', args, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` })),
  );
}

export function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => execFile(cmd, args, (err, stdout, stderr) => (err ? reject(new Error(`${cmd} ${args.join(' ')}: ${stderr}`)) : resolve(stdout))));
}
