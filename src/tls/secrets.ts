// The proxy's TLS secrets by name, as Envoy's SDS names them: its workload certificate and key, and the trust
// bundle it verifies peers with. Filled by SDS (Secret resources from any xDS server) or by the proxy's own
// certificate client (a CSR to the mesh CA); read by the TLS contexts of the data path, which rebuild for new
// connections when a secret changes (connections already open keep theirs).

/** Istio's (and our) names for the workload certificate and the mesh trust bundle. */
export const WORKLOAD_CERT_SECRET = 'default';
export const ROOT_CA_SECRET = 'ROOTCA';

/** Envoy's Secret.tls_certificate: a certificate chain and its private key (PEM). */
export interface TlsCertificateSecret {
  readonly kind: 'tls_certificate';
  readonly certChainPem: string;
  readonly privateKeyPem: string;
}

/** Envoy's Secret.validation_context: the CA certificates peers are verified against (PEM). */
export interface ValidationContextSecret {
  readonly kind: 'validation_context';
  readonly trustedCaPem: string;
}

export type SecretModel = TlsCertificateSecret | ValidationContextSecret;

export type SecretListener = (name: string, secret: SecretModel | undefined) => void;

export class SecretStore {
  private readonly secrets = new Map<string, SecretModel>();
  private readonly listeners = new Set<SecretListener>();

  get(name: string): SecretModel | undefined {
    return this.secrets.get(name);
  }

  /** Sets (or with undefined, removes) a secret; listeners hear of it only when it changed. */
  set(name: string, secret: SecretModel | undefined): void {
    const old = this.secrets.get(name);
    if (old === secret) return;
    if (secret === undefined) this.secrets.delete(name);
    else this.secrets.set(name, secret);
    for (const listener of this.listeners) listener(name, secret);
  }

  onChange(listener: SecretListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  names(): string[] {
    return [...this.secrets.keys()];
  }
}
