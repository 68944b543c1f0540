// The mesh CA's signing identity, from --ca-dir: an intermediate the operator plugged in (ca-cert.pem, ca-key.pem,
// cert-chain.pem, root-cert.pem: Istio's names), else a root (root-cert.pem, root-key.pem) that the operator
// supplied or that the first start created (ECDSA P-256, key mode 0600) and every later start reuses.
import { X509Certificate as NodeX509 } from 'node:crypto';
import { x509 } from '../../src/tls/x509.js';
import { generateKeyPair, importSigningKey, privateKeyPem, type SigningKey } from '../../src/tls/keys.js';
import { createRootCert } from './issue.js';
import {
  CA_CERT_FILE,
  CA_KEY_FILE,
  CERT_CHAIN_FILE,
  CaDirError,
  ROOT_CERT_FILE,
  ROOT_KEY_FILE,
  caPath,
  createPrivateFile,
  createPublicFile,
  ensureCaDir,
  exists,
  looselyReadable,
  readCaFile,
} from './files.js';

/** A created root lives ten years (Istio's self-signed root default); workload certificates live hours. */
export const ROOT_TTL_MS = 10 * 365 * 24 * 3600_000;

export type AuthoritySource = 'created-root' | 'root' | 'intermediate';

export interface MeshAuthority {
  readonly dir: string;
  readonly source: AuthoritySource;
  /** The certificate that signs workload certificates (the root, or the plugged-in intermediate). */
  readonly signingCert: x509.X509Certificate;
  readonly signing: SigningKey;
  /** PEM certificates between a leaf and the root: [] for a root, [ca-cert, ...] for an intermediate. */
  readonly intermediatesPem: readonly string[];
  /** The trust bundle proxies verify peers (and the control server) with. */
  readonly rootPem: string;
  /** Warnings for the operator (a key readable by others, a CA near its end). */
  readonly warnings: readonly string[];
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g;

export function splitPemCerts(text: string): string[] {
  return (text.match(PEM_CERT) ?? []).map((p) => (p.endsWith('\n') ? p : `${p}\n`));
}

function parseCert(dir: string, file: string, pem: string): NodeX509 {
  try {
    return new NodeX509(pem);
  } catch (err) {
    throw new CaDirError(`${caPath(dir, file)}: not a PEM certificate (${(err as Error).message})`);
  }
}

/** Loads the CA from `dir`, creating a root there when the directory holds none. */
export async function loadOrCreateAuthority(dir: string, opts: { trustDomain: string; nowMs?: number }): Promise<MeshAuthority> {
  ensureCaDir(dir);
  const now = opts.nowMs ?? Date.now();
  if (exists(dir, CA_CERT_FILE) || exists(dir, CA_KEY_FILE)) return loadIntermediate(dir, now);
  const hasCert = exists(dir, ROOT_CERT_FILE);
  const hasKey = exists(dir, ROOT_KEY_FILE);
  if (hasCert !== hasKey) {
    throw new CaDirError(
      `${dir} holds ${hasCert ? ROOT_CERT_FILE : ROOT_KEY_FILE} without ${hasCert ? ROOT_KEY_FILE : ROOT_CERT_FILE}: supply both, or remove it to have a new root created (every workload certificate then changes)`,
    );
  }
  if (!hasCert) await createRoot(dir, opts.trustDomain, now);
  const created = !hasCert;
  const rootPem = readCaFile(dir, ROOT_CERT_FILE);
  const root = parseCert(dir, ROOT_CERT_FILE, rootPem);
  const { signing, warnings } = await loadKey(dir, ROOT_KEY_FILE, root, now);
  return {
    dir,
    source: created ? 'created-root' : 'root',
    signingCert: new x509.X509Certificate(root.raw),
    signing,
    intermediatesPem: [],
    rootPem: splitPemCerts(rootPem)[0]!,
    warnings,
  };
}

async function createRoot(dir: string, trustDomain: string, now: number): Promise<void> {
  const keys = await generateKeyPair();
  const certPem = await createRootCert(keys, trustDomain, now, ROOT_TTL_MS);
  // The key first: a crash in between leaves a key without a certificate, which the next start names.
  if (!createPrivateFile(dir, ROOT_KEY_FILE, await privateKeyPem(keys.privateKey)) || !createPublicFile(dir, ROOT_CERT_FILE, certPem)) {
    throw new CaDirError(`${dir}: another process created the root at the same time; start again to use it`);
  }
}

/** The CA key of `cert`: readable, of a kind we sign with, and the private half of the certificate's public key. */
async function loadKey(dir: string, file: string, cert: NodeX509, now: number): Promise<{ signing: SigningKey; warnings: string[] }> {
  const warnings: string[] = [];
  if (looselyReadable(dir, file)) warnings.push(`${caPath(dir, file)} can be read by group or others: chmod 600 it`);
  let imported;
  try {
    imported = await importSigningKey(readCaFile(dir, file));
  } catch (err) {
    throw new CaDirError(`${caPath(dir, file)}: ${(err as Error).message}`);
  }
  if (!cert.checkPrivateKey(imported.keyObject)) throw new CaDirError(`${caPath(dir, file)} is not the key of the certificate beside it`);
  if (!cert.ca) throw new CaDirError(`the certificate for ${caPath(dir, file)} is not a CA certificate (basicConstraints CA:TRUE)`);
  const end = Date.parse(cert.validTo);
  if (end <= now) throw new CaDirError(`the CA certificate for ${caPath(dir, file)} expired at ${new Date(end).toISOString()}`);
  if (end - now < 30 * 24 * 3600_000) warnings.push(`the CA certificate for ${caPath(dir, file)} expires at ${new Date(end).toISOString()}: workload certificates are cut short to it`);
  return { signing: imported.signing, warnings };
}

/** An operator's intermediate: every certificate of the chain must be signed by the next, the last by the root. */
async function loadIntermediate(dir: string, now: number): Promise<MeshAuthority> {
  for (const file of [CA_CERT_FILE, CA_KEY_FILE, ROOT_CERT_FILE]) {
    if (!exists(dir, file)) throw new CaDirError(`${dir}: an intermediate CA needs ${CA_CERT_FILE}, ${CA_KEY_FILE} and ${ROOT_CERT_FILE} (and may have ${CERT_CHAIN_FILE}); ${file} is missing`);
  }
  const caPem = splitPemCerts(readCaFile(dir, CA_CERT_FILE))[0];
  const rootPem = splitPemCerts(readCaFile(dir, ROOT_CERT_FILE))[0];
  if (caPem === undefined) throw new CaDirError(`${caPath(dir, CA_CERT_FILE)}: no PEM certificate in it`);
  if (rootPem === undefined) throw new CaDirError(`${caPath(dir, ROOT_CERT_FILE)}: no PEM certificate in it`);
  const ca = parseCert(dir, CA_CERT_FILE, caPem);
  const root = parseCert(dir, ROOT_CERT_FILE, rootPem);
  // Istio's cert-chain.pem runs from ca-cert up to the root; the root itself is sent apart, as the trust bundle.
  const chain = exists(dir, CERT_CHAIN_FILE) ? splitPemCerts(readCaFile(dir, CERT_CHAIN_FILE)) : [caPem];
  const above = chain.map((p) => parseCert(dir, CERT_CHAIN_FILE, p)).filter((c) => c.fingerprint256 !== ca.fingerprint256 && c.fingerprint256 !== root.fingerprint256);
  const path = [ca, ...above, root];
  for (let i = 0; i + 1 < path.length; i++) {
    if (!path[i]!.verify(path[i + 1]!.publicKey)) {
      throw new CaDirError(`${dir}: ${path[i]!.subject.replace(/\n/g, ', ')} is not signed by ${path[i + 1]!.subject.replace(/\n/g, ', ')} (check ${CERT_CHAIN_FILE} and ${ROOT_CERT_FILE})`);
    }
  }
  const { signing, warnings } = await loadKey(dir, CA_KEY_FILE, ca, now);
  return {
    dir,
    source: 'intermediate',
    signingCert: new x509.X509Certificate(ca.raw),
    signing,
    intermediatesPem: [caPem, ...above.map((c) => c.toString())],
    rootPem,
    warnings,
  };
}
