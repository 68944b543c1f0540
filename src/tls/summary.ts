// What /config_dump shows of the TLS secrets: per certificate its subject, SPIFFE ID, validity and serial; per
// trust bundle the same of each CA. Never a private key.
import { X509Certificate } from 'node:crypto';
import type { SecretStore } from './secrets.js';
import { parseSubjectAltNames, spiffeIdOfSans } from './san.js';

export interface CertificateSummary {
  readonly subject: string;
  readonly spiffeId: string | null;
  readonly notBefore: string;
  readonly notAfter: string;
  readonly serial: string;
}

export interface SecretSummary {
  readonly name: string;
  readonly kind: 'tls_certificate' | 'validation_context';
  readonly certificates: readonly CertificateSummary[];
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

function summarize(pem: string): CertificateSummary[] {
  const out: CertificateSummary[] = [];
  for (const block of pem.match(PEM_BLOCK) ?? []) {
    try {
      const c = new X509Certificate(block);
      out.push({
        // A workload certificate may carry no subject at all (its identity is the URI SAN): Node gives undefined.
        subject: (c.subject ?? '').replace(/\n/g, ', '),
        spiffeId: spiffeIdOfSans(parseSubjectAltNames(c.subjectAltName)),
        notBefore: new Date(c.validFrom).toISOString(),
        notAfter: new Date(c.validTo).toISOString(),
        serial: c.serialNumber,
      });
    } catch {
      // A block that does not parse is left out; the TLS context reports it when it is used.
    }
  }
  return out;
}

export function secretSummaries(store: SecretStore): SecretSummary[] {
  return store.names().map((name) => {
    const s = store.get(name)!;
    return { name, kind: s.kind, certificates: summarize(s.kind === 'tls_certificate' ? s.certChainPem : s.trustedCaPem) };
  });
}
