// Key pairs and PEM conversions for the mesh CA and the proxy's certificate client. Node's WebCrypto makes the
// keys (what @peculiar/x509 signs with); node:crypto reads the PEM shapes operators bring (SEC1 or PKCS #8).
import { createPrivateKey, webcrypto, type KeyObject } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
export type SigningAlgorithm = webcrypto.Algorithm | webcrypto.EcdsaParams;

/** ECDSA P-256 with SHA-256: the workload and root key type (Istio's default for ECC keys). */
export const EC_P256: webcrypto.EcKeyGenParams & webcrypto.EcdsaParams = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

export interface SigningKey {
  readonly privateKey: CryptoKey;
  /** The algorithm @peculiar/x509 signs with for this key. */
  readonly algorithm: SigningAlgorithm;
}

/** A fresh P-256 key pair in memory. Extractable, because the TLS stack wants the private key as PEM. */
export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
}

/** PKCS #8 PEM of a WebCrypto private key. */
export async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return pemBlock('PRIVATE KEY', der);
}

export function pemBlock(label: string, der: Buffer): string {
  const body = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${body}\n-----END ${label}-----\n`;
}

/**
 * An operator's CA key (PEM: PKCS #8, SEC1 "EC PRIVATE KEY" or PKCS #1 "RSA PRIVATE KEY") as a WebCrypto signing
 * key. EC P-256/P-384 sign with ECDSA (SHA-256/384), RSA with PKCS #1 v1.5 SHA-256: what every TLS peer verifies.
 */
export async function importSigningKey(pem: string): Promise<{ signing: SigningKey; keyObject: KeyObject }> {
  const keyObject = createPrivateKey(pem);
  const der = keyObject.export({ format: 'der', type: 'pkcs8' });
  const type = keyObject.asymmetricKeyType;
  let importAlg: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  let algorithm: SigningAlgorithm;
  if (type === 'ec') {
    const curve = keyObject.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : undefined;
    if (namedCurve === undefined) throw new Error(`EC key on curve ${curve ?? '?'}: expected P-256 or P-384`);
    importAlg = { name: 'ECDSA', namedCurve };
    algorithm = { name: 'ECDSA', hash: namedCurve === 'P-256' ? 'SHA-256' : 'SHA-384' } as webcrypto.EcdsaParams;
  } else if (type === 'rsa') {
    importAlg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    algorithm = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as webcrypto.Algorithm;
  } else {
    throw new Error(`a ${type ?? 'unknown'} key: expected EC (P-256, P-384) or RSA`);
  }
  const privateKey = await webcrypto.subtle.importKey('pkcs8', der, importAlg, false, ['sign']);
  return { signing: { privateKey, algorithm }, keyObject };
}
