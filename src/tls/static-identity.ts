// A workload identity from files (`pillion proxy --cert FILE --key FILE --ca FILE`): what lets a proxy do mTLS
// without the mesh CA (tests, operators with their own PKI). Read and checked once at startup, so a wrong file
// fails the start with its name rather than every handshake later.
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import { ROOT_CA_SECRET, WORKLOAD_CERT_SECRET, type SecretStore } from './secrets.js';
import { parseSubjectAltNames, spiffeIdOfSans } from './san.js';

export interface IdentityFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

function read(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`${what} ${file}: ${(err as Error).message}`);
  }
}

/** Loads the files into the store ('default' and 'ROOTCA'); returns the certificate's SPIFFE ID (null if none). */
export function loadIdentityFiles(store: SecretStore, files: IdentityFiles): { spiffeId: string | null; notAfter: string } {
  const certChainPem = read(files.cert, '--cert');
  const privateKeyPem = read(files.key, '--key');
  const trustedCaPem = read(files.ca, '--ca');
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certChainPem);
  } catch (err) {
    throw new Error(`--cert ${files.cert}: not a PEM certificate: ${(err as Error).message}`);
  }
  try {
    tls.createSecureContext({ cert: certChainPem, key: privateKeyPem, ca: trustedCaPem });
  } catch (err) {
    throw new Error(`--cert/--key/--ca: they do not load together (a key that is not the certificate's?): ${(err as Error).message}`);
  }
  store.set(WORKLOAD_CERT_SECRET, { kind: 'tls_certificate', certChainPem, privateKeyPem });
  store.set(ROOT_CA_SECRET, { kind: 'validation_context', trustedCaPem });
  return { spiffeId: spiffeIdOfSans(parseSubjectAltNames(cert.subjectAltName)), notAfter: new Date(cert.validTo).toISOString() };
}
