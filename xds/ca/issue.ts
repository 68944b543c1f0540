// Signs certificates with the mesh CA: workload certificates (SPIFFE URI SAN, client and server auth) and the
// control server's own serving certificate (DNS and IP SANs). Istio's shape: an empty subject, the identity in a
// critical subjectAltName (RFC 5280 §4.2.1.6), no CA rights, and never past the signing certificate's own end.
import { randomBytes, webcrypto } from 'node:crypto';
import { x509 } from '../../src/tls/x509.js';
import type { MeshAuthority } from './authority.js';

/** Signed this far in the past, so a peer whose clock is a little behind accepts a certificate issued just now. */
export const BACKDATE_MS = 60_000;

export interface IssueRequest {
  readonly publicKey: x509.PublicKey | webcrypto.CryptoKey;
  readonly sans: readonly x509.JsonGeneralName[];
  readonly ttlMs: number;
  readonly nowMs: number;
}

/** A positive 128-bit serial: RFC 5280 allows 20 octets; CA/B forum rules ask for 64 bits of randomness. */
function serialNumber(): string {
  const b = randomBytes(16);
  b[0] = (b[0]! & 0x7f) | 0x40;
  return b.toString('hex');
}

/** Issues a leaf certificate; returns its PEM. */
export async function issueLeaf(ca: MeshAuthority, req: IssueRequest): Promise<string> {
  const notBefore = new Date(req.nowMs - BACKDATE_MS);
  const notAfter = new Date(Math.min(req.nowMs + req.ttlMs, ca.signingCert.notAfter.getTime()));
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
    // Critical: the subject is empty, so the SAN is the whole identity (RFC 5280 §4.2.1.6).
    new x509.SubjectAlternativeNameExtension([...req.sans], true),
    await x509.AuthorityKeyIdentifierExtension.create(ca.signingCert.publicKey),
  ];
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialNumber(),
    subject: '',
    issuer: ca.signingCert.subjectName,
    notBefore,
    notAfter,
    publicKey: req.publicKey,
    signingKey: ca.signing.privateKey,
    signingAlgorithm: ca.signing.algorithm,
    extensions,
  });
  return pemOf(cert);
}

/** PEM with a final newline, so certificates concatenate into a chain file as every TLS stack reads it. */
function pemOf(cert: x509.X509Certificate): string {
  const pem = cert.toString('pem').replace(/\r\n/g, '\n');
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

/** A self-signed CA certificate for a new root key. */
export async function createRootCert(keys: webcrypto.CryptoKeyPair, trustDomain: string, nowMs: number, ttlMs: number): Promise<string> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialNumber(),
    // Istio names its self-signed root by the trust domain, as the organization.
    name: [{ O: [trustDomain] }, { CN: ['Pillion mesh root CA'] }],
    notBefore: new Date(nowMs - BACKDATE_MS),
    notAfter: new Date(nowMs + ttlMs),
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return pemOf(cert);
}
