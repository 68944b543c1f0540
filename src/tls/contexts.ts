// TLS contexts built from secrets: a TlsContextModel (which secret, by SDS name or inline) resolved against the
// SecretStore into a Node SecureContext, cached per secret version. A secret replaced in the store (rotation)
// makes the next resolve build a new context, so new connections present and verify with the new material while
// connections already open keep the context they were made with.
import * as tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { SecretSourceModel, TlsContextModel } from '../config/model.js';
import type { SecretModel, SecretStore, TlsCertificateSecret, ValidationContextSecret } from './secrets.js';
import { parseSubjectAltNames, spiffeIdOfSans } from './san.js';

export interface ResolvedTls {
  readonly secureContext: tls.SecureContext;
  /** What the context was built from (a tls.Server takes these in setSecureContext). */
  readonly options: tls.SecureContextOptions;
  /** Our own SPIFFE ID (from the certificate presented), '' without one: XFCC's By=. */
  readonly localSpiffeId: string;
  /** Whether peers are verified against a CA bundle. */
  readonly verifies: boolean;
}

/** Why a context cannot be built: a secret not there yet (SDS, the CA client) or one that does not load. */
export interface TlsUnavailable {
  readonly unavailable: string;
}

interface Entry {
  readonly cert: SecretModel | undefined;
  readonly ca: SecretModel | undefined;
  readonly result: ResolvedTls | TlsUnavailable;
}

/** TLS 1.2 is the floor Envoy and Istio use for mesh traffic. */
const MIN_VERSION = 'TLSv1.2';
/**
 * Envoy's default cipher suites (server and client, non-FIPS): for TLS 1.2 ECDHE with AES-GCM or ChaCha20-Poly1305
 * only. Node's default list also takes CBC suites with a SHA-1 MAC (ECDHE-ECDSA-AES128-SHA) and DHE. The TLS 1.3
 * suites are named so that TLS 1.3 stays on.
 */
const CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
].join(':');
/** TLS 1.3's suites, always offered (not configurable, in Envoy as here) beside a configured TLS 1.2 list. */
const TLS13_SUITES = CIPHERS.split(':').filter((c) => c.startsWith('TLS_')).join(':');

export function isUnavailable(r: ResolvedTls | TlsUnavailable): r is TlsUnavailable {
  return (r as TlsUnavailable).unavailable !== undefined;
}

export class TlsContexts {
  private readonly cache = new WeakMap<TlsContextModel, Entry>();

  constructor(readonly store: SecretStore) {}

  private secretOf(source: SecretSourceModel | null): SecretModel | undefined {
    if (source === null) return undefined;
    return source.kind === 'inline' ? source.secret : this.store.get(source.name);
  }

  /** The context for `model` with the secrets the store holds now; cheap when they have not changed. */
  resolve(model: TlsContextModel): ResolvedTls | TlsUnavailable {
    const cert = this.secretOf(model.certificate);
    const ca = this.secretOf(model.validation);
    const hit = this.cache.get(model);
    if (hit !== undefined && hit.cert === cert && hit.ca === ca) return hit.result;
    const result = build(model, cert, ca);
    this.cache.set(model, { cert, ca, result });
    return result;
  }
}

function describe(source: SecretSourceModel): string {
  return source.kind === 'sds' ? `secret "${source.name}"` : 'the inline secret';
}

function build(model: TlsContextModel, cert: SecretModel | undefined, ca: SecretModel | undefined): ResolvedTls | TlsUnavailable {
  const params = model.params;
  const options: tls.SecureContextOptions =
    params === null
      ? { minVersion: MIN_VERSION, ciphers: CIPHERS }
      : {
          minVersion: params.minVersion,
          maxVersion: params.maxVersion,
          ciphers: params.cipherSuites === null ? CIPHERS : [TLS13_SUITES, ...params.cipherSuites].join(':'),
          ...(params.ecdhCurves === null ? {} : { ecdhCurve: params.ecdhCurves.join(':') }),
        };
  let localSpiffeId = '';
  if (model.certificate !== null) {
    if (cert === undefined) return { unavailable: `${describe(model.certificate)} (certificate and key) is not there yet` };
    if (cert.kind !== 'tls_certificate') return { unavailable: `${describe(model.certificate)} is a trust bundle, not a certificate` };
    const c: TlsCertificateSecret = cert;
    options.cert = c.certChainPem;
    options.key = c.privateKeyPem;
    try {
      localSpiffeId = spiffeIdOfSans(parseSubjectAltNames(new X509Certificate(c.certChainPem).subjectAltName)) ?? '';
    } catch (err) {
      return { unavailable: `${describe(model.certificate)}: the certificate does not parse: ${(err as Error).message}` };
    }
  }
  if (model.validation !== null) {
    if (ca === undefined) return { unavailable: `${describe(model.validation)} (trust bundle) is not there yet` };
    if (ca.kind !== 'validation_context') return { unavailable: `${describe(model.validation)} is a certificate, not a trust bundle` };
    const v: ValidationContextSecret = ca;
    options.ca = v.trustedCaPem;
  }
  try {
    return { secureContext: tls.createSecureContext(options), options, localSpiffeId, verifies: model.validation !== null };
  } catch (err) {
    // A key that does not match its certificate, a PEM that does not parse: refused like a missing secret.
    return { unavailable: `the TLS secrets do not load: ${(err as Error).message}` };
  }
}
