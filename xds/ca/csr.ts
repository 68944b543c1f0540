// What the CA accepts in a certificate signing request: a bounded PEM PKCS #10, self-signed by its key (proof the
// caller holds it), with a key strong enough, asking (if it names anyone) only for the caller's own SPIFFE ID.
import { createPublicKey } from 'node:crypto';
import { x509 } from '../../src/tls/x509.js';

/** A P-256 CSR is ~500 bytes of PEM and an RSA-4096 one ~1.7 KiB; anything past this is refused unparsed. */
export const MAX_CSR_BYTES = 8 * 1024;

export interface CheckedCsr {
  readonly publicKey: x509.PublicKey;
  /** URI SANs the CSR asks for (may be empty: the CA names the certificate after the authenticated caller). */
  readonly uris: readonly string[];
}

export type CsrVerdict = { readonly ok: true; readonly csr: CheckedCsr } | { readonly ok: false; readonly message: string };

const SAN_OID = '2.5.29.17';
const EC_CURVES = new Set(['prime256v1', 'secp384r1']);

/** Why a CSR's public key (SPKI DER) is not acceptable, or undefined. Node reads the key; it knows every kind. */
function weakKey(spki: Buffer): string | undefined {
  let key;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (err) {
    return `unreadable public key: ${(err as Error).message}`;
  }
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec') return EC_CURVES.has(details.namedCurve ?? '') ? undefined : `EC key on curve ${details.namedCurve ?? '?'}: expected P-256 or P-384`;
  if (key.asymmetricKeyType === 'rsa') return (details.modulusLength ?? 0) >= 2048 ? undefined : `RSA key of ${details.modulusLength ?? '?'} bits: expected at least 2048`;
  return `a ${key.asymmetricKeyType ?? 'unknown'} key: expected ECDSA P-256/P-384 or RSA of 2048 bits or more`;
}

export async function checkCsr(pem: string): Promise<CsrVerdict> {
  if (pem.length > MAX_CSR_BYTES) return { ok: false, message: `CSR of ${pem.length} bytes; at most ${MAX_CSR_BYTES}` };
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(pem);
  } catch (err) {
    return { ok: false, message: `not a PEM PKCS #10 CSR: ${(err as Error).message}` };
  }
  let verified = false;
  try {
    verified = await csr.verify();
  } catch {
    verified = false;
  }
  if (!verified) return { ok: false, message: 'the CSR signature does not verify with its own public key' };
  const keyProblem = weakKey(Buffer.from(csr.publicKey.rawData));
  if (keyProblem !== undefined) return { ok: false, message: keyProblem };
  const uris: string[] = [];
  for (const ext of csr.getExtensions(SAN_OID)) {
    const san = new x509.SubjectAlternativeNameExtension(ext.rawData);
    for (const name of san.names.items) {
      if (name.type === 'url') uris.push(name.value);
      else return { ok: false, message: `the CSR asks for a ${name.type} name (${name.value}); workload certificates carry only their SPIFFE ID` };
    }
  }
  return { ok: true, csr: { publicKey: csr.publicKey, uris } };
}
