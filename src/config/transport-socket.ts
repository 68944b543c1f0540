// Translates a transport_socket (envoy.transport_sockets.tls with an UpstreamTlsContext or DownstreamTlsContext)
// and a Secret (SDS) into the internal model. Certificates are read as PEM: inline, or from a file once at
// translation time (DataSource.filename, as Envoy reads it); secrets named by SDS are looked up at connection
// time in the SecretStore, so the model holds only their names.
import { readFileSync } from 'node:fs';
import { getCiphers } from 'node:tls';
import type { DownstreamTlsModel, SanMatcherModel, SecretSourceModel, TlsContextModel, TlsParamsModel, UpstreamTlsModel } from './model.js';
import { decodeAny, decodeMessage, MESSAGE_NAMES, TYPE_URLS } from './protos.js';
import { invalid, notEnforced, wrapped, type Plain } from './values.js';
import type { SecretModel } from '../tls/secrets.js';

/** Envoy's names for the TLS transport socket (the old one is still sent by some control planes). */
const TLS_SOCKET_NAMES: ReadonlySet<string> = new Set(['envoy.transport_sockets.tls', 'tls']);
const SAN_TYPES: ReadonlySet<string> = new Set(['URI', 'DNS', 'EMAIL', 'IP_ADDRESS']);

function dataSource(d: Plain | undefined, field: string): string {
  if (!d) return invalid(`${field}: missing`);
  if (typeof d.inline_string === 'string') return d.inline_string;
  if (d.inline_bytes) return Buffer.from(d.inline_bytes as Uint8Array).toString('utf8');
  if (typeof d.filename === 'string') {
    try {
      return readFileSync(d.filename, 'utf8');
    } catch (err) {
      return invalid(`${field}.filename: cannot read ${d.filename}: ${(err as Error).message}`);
    }
  }
  if (typeof d.environment_variable === 'string') {
    const v = process.env[d.environment_variable];
    if (v === undefined) invalid(`${field}.environment_variable: ${d.environment_variable} is not set`);
    return v;
  }
  return invalid(`${field}: no inline_string, inline_bytes, filename or environment_variable`);
}

function tlsCertificate(c: Plain, field: string): SecretModel {
  return {
    kind: 'tls_certificate',
    certChainPem: dataSource(c.certificate_chain, `${field}.certificate_chain`),
    privateKeyPem: dataSource(c.private_key, `${field}.private_key`),
  };
}

function stringMatcher(m: Plain | undefined, field: string): Pick<SanMatcherModel, 'match' | 'value' | 'ignoreCase'> {
  if (!m) return invalid(`${field}: missing`);
  const ignoreCase = m.ignore_case === true;
  for (const match of ['exact', 'prefix', 'suffix', 'contains'] as const) {
    if (typeof m[match] === 'string') return { match, value: m[match] as string, ignoreCase };
  }
  return invalid(`${field}: only exact, prefix, suffix and contains are supported`);
}

/** The SAN matchers, and the CA (inline) of a CertificateValidationContext. */
function validationContext(v: Plain, field: string): { matchers: SanMatcherModel[]; ca: SecretModel | null } {
  const matchers: SanMatcherModel[] = [];
  (v.match_typed_subject_alt_names ?? []).forEach((m: Plain, i: number) => {
    const f = `${field}.match_typed_subject_alt_names[${i}]`;
    const sanType = String(m.san_type ?? 'SAN_TYPE_UNSPECIFIED');
    if (!SAN_TYPES.has(sanType)) invalid(`${f}.san_type: ${sanType} is not supported (URI, DNS, EMAIL, IP_ADDRESS)`);
    matchers.push({ sanType: sanType as SanMatcherModel['sanType'], ...stringMatcher(m.matcher, `${f}.matcher`) });
  });
  // The deprecated untyped form matches any SAN type; Istio and go-control-plane send URIs in it.
  (v.match_subject_alt_names ?? []).forEach((m: Plain, i: number) => {
    matchers.push({ sanType: 'URI', ...stringMatcher(m, `${field}.match_subject_alt_names[${i}]`) });
  });
  if ((v.verify_certificate_hash ?? []).length > 0 || (v.verify_certificate_spki ?? []).length > 0) {
    invalid(`${field}: verify_certificate_hash and verify_certificate_spki are not supported`);
  }
  if (v.allow_expired_certificate === true) invalid(`${field}.allow_expired_certificate: not supported (expired certificates are always refused)`);
  // Each of these would loosen or replace verification if it were dropped: refused by name instead.
  if (v.crl) invalid(`${field}.crl: certificate revocation lists are not supported (a revoked certificate would be accepted)`);
  if (v.custom_validator_config) invalid(`${field}.custom_validator_config: not supported (only the default validator exists)`);
  if (wrapped<boolean>(v.require_signed_certificate_timestamp, false)) invalid(`${field}.require_signed_certificate_timestamp: not supported`);
  if (v.max_verify_depth !== undefined && v.max_verify_depth !== null) invalid(`${field}.max_verify_depth: not supported (chains of any depth would be accepted)`);
  if (v.trust_chain_verification === 'ACCEPT_UNTRUSTED') notEnforced(`${field}.trust_chain_verification`, 'untrusted certificates are still refused');
  const ca = v.trusted_ca ? { kind: 'validation_context' as const, trustedCaPem: dataSource(v.trusted_ca, `${field}.trusted_ca`) } : null;
  return { matchers, ca };
}

function sdsName(s: Plain, field: string): string {
  if (!s.name) invalid(`${field}.name: missing`);
  return String(s.name);
}

/** Names OpenSSL knows for TLS 1.2 cipher suites (lower case): a name it does not know is refused, as Envoy does. */
const KNOWN_CIPHERS: ReadonlySet<string> = new Set(getCiphers());
/** The ECDHE groups Envoy (BoringSSL) offers, by the names Envoy's config uses; OpenSSL takes the same names. */
const KNOWN_CURVES: ReadonlySet<string> = new Set(['X25519', 'P-256', 'P-384', 'P-521']);

/**
 * TlsParameters, enforced: the version range within TLS 1.2 - 1.3 (older versions are never spoken, so asking for
 * them is said, not done), TLS 1.2 cipher suites and ECDHE curves by name. BoringSSL's equal-preference groups
 * (`[A|B]`) are read as A then B. TLS 1.3's suites are not configurable, in Envoy as here: naming one is said.
 */
function tlsParams(p: Plain | undefined, field: string): TlsParamsModel | null {
  if (p === undefined || p === null) return null;
  const min = String(p.tls_minimum_protocol_version ?? 'TLS_AUTO');
  const max = String(p.tls_maximum_protocol_version ?? 'TLS_AUTO');
  if (min === 'TLSv1_0' || min === 'TLSv1_1') notEnforced(`${field}.tls_minimum_protocol_version`, 'TLS 1.2 is the lowest version spoken');
  if (max === 'TLSv1_0' || max === 'TLSv1_1') invalid(`${field}.tls_maximum_protocol_version: ${max} is below TLS 1.2, the lowest version spoken`);
  const minVersion = min === 'TLSv1_3' ? 'TLSv1.3' : 'TLSv1.2';
  const maxVersion = max === 'TLSv1_2' ? 'TLSv1.2' : 'TLSv1.3';
  if (minVersion === 'TLSv1.3' && maxVersion === 'TLSv1.2') invalid(`${field}: tls_minimum_protocol_version TLSv1_3 is above tls_maximum_protocol_version TLSv1_2`);
  let cipherSuites: string[] | null = null;
  const suites: unknown[] = p.cipher_suites ?? [];
  if (suites.length > 0) {
    const named: string[] = [];
    cipherSuites = named;
    suites.forEach((entry, i) => {
      const names = String(entry).replace(/^\[|\]$/g, '').split('|');
      for (const raw of names) {
        const name = raw.trim();
        if (name.startsWith('TLS_')) {
          notEnforced(`${field}.cipher_suites[${i}]`, `${name} is a TLS 1.3 suite, which are not configurable (as in Envoy)`);
          continue;
        }
        if (!KNOWN_CIPHERS.has(name.toLowerCase())) invalid(`${field}.cipher_suites[${i}]: unknown cipher suite ${JSON.stringify(name)}`);
        named.push(name);
      }
    });
    if (named.length === 0 && minVersion === 'TLSv1.2') invalid(`${field}.cipher_suites: no TLS 1.2 suite left, so TLS 1.2 peers could not connect (set tls_minimum_protocol_version TLSv1_3)`);
  }
  let ecdhCurves: string[] | null = null;
  const curves: unknown[] = p.ecdh_curves ?? [];
  if (curves.length > 0) {
    ecdhCurves = curves.map((c, i) => {
      const name = String(c);
      if (!KNOWN_CURVES.has(name)) invalid(`${field}.ecdh_curves[${i}]: unknown curve ${JSON.stringify(name)} (X25519, P-256, P-384, P-521)`);
      return name;
    });
  }
  return { minVersion, maxVersion, cipherSuites, ecdhCurves };
}

function commonTlsContext(c: Plain | undefined, field: string): TlsContextModel {
  const ctx = c ?? {};
  let certificate: SecretSourceModel | null = null;
  const inlineCerts: Plain[] = ctx.tls_certificates ?? [];
  const sdsCerts: Plain[] = ctx.tls_certificate_sds_secret_configs ?? [];
  if (inlineCerts.length + sdsCerts.length > 1) invalid(`${field}: more than one certificate is not supported`);
  if (inlineCerts.length === 1) certificate = { kind: 'inline', secret: tlsCertificate(inlineCerts[0]!, `${field}.tls_certificates[0]`) };
  if (sdsCerts.length === 1) certificate = { kind: 'sds', name: sdsName(sdsCerts[0]!, `${field}.tls_certificate_sds_secret_configs[0]`) };

  let validation: SecretSourceModel | null = null;
  let sanMatchers: SanMatcherModel[] = [];
  const fromContext = (v: Plain, f: string): void => {
    const { matchers, ca } = validationContext(v, f);
    sanMatchers = matchers;
    if (ca !== null) validation = { kind: 'inline', secret: ca };
  };
  if (ctx.validation_context) fromContext(ctx.validation_context, `${field}.validation_context`);
  if (ctx.validation_context_sds_secret_config) {
    validation = { kind: 'sds', name: sdsName(ctx.validation_context_sds_secret_config, `${field}.validation_context_sds_secret_config`) };
  }
  const combined = ctx.combined_validation_context;
  if (combined) {
    // Istio's shape: the SAN matchers in the default context, the CA bundle by SDS (ROOTCA).
    if (combined.default_validation_context) fromContext(combined.default_validation_context, `${field}.combined_validation_context.default_validation_context`);
    if (combined.validation_context_sds_secret_config) {
      validation = {
        kind: 'sds',
        name: sdsName(combined.validation_context_sds_secret_config, `${field}.combined_validation_context.validation_context_sds_secret_config`),
      };
    }
  }
  const params = tlsParams(ctx.tls_params, `${field}.tls_params`);
  if (sanMatchers.length > 0 && validation === null) invalid(`${field}: SAN matchers without a trusted CA would match unverified certificates`);
  return { certificate, validation, sanMatchers, alpn: (ctx.alpn_protocols ?? []).map(String), params };
}

/** The typed_config of a TLS transport socket, or null for raw_buffer (plaintext). */
function tlsConfig(ts: Plain | undefined, field: string, typeUrl: string): Plain | null {
  if (!ts) return null;
  const name = String(ts.name ?? '');
  if (name === 'envoy.transport_sockets.raw_buffer' || name === 'raw_buffer') return null;
  if (!TLS_SOCKET_NAMES.has(name)) invalid(`${field}.name: ${name || '(empty)'} is not supported (envoy.transport_sockets.tls or raw_buffer)`);
  const any = ts.typed_config;
  if (!any) invalid(`${field}.typed_config: missing`);
  if (any.type_url !== typeUrl) invalid(`${field}.typed_config: expected ${typeUrl}, got ${String(any.type_url)}`);
  return decodeAny<Plain>(any);
}

export function upstreamTls(ts: Plain | undefined, field: string): UpstreamTlsModel | undefined {
  const u = tlsConfig(ts, field, TYPE_URLS.UpstreamTlsContext);
  if (u === null) return undefined;
  return { context: commonTlsContext(u.common_tls_context, `${field}.typed_config.common_tls_context`), sni: String(u.sni ?? '') };
}

export function downstreamTls(ts: Plain | undefined, field: string): Omit<DownstreamTlsModel, 'plaintext'> | undefined {
  const d = tlsConfig(ts, field, TYPE_URLS.DownstreamTlsContext);
  if (d === null) return undefined;
  const context = commonTlsContext(d.common_tls_context, `${field}.typed_config.common_tls_context`);
  if (context.certificate === null) invalid(`${field}.typed_config.common_tls_context: a server needs a certificate`);
  const requireClientCertificate = wrapped<boolean>(d.require_client_certificate, false);
  if (wrapped<boolean>(d.require_sni, false)) notEnforced(`${field}.typed_config.require_sni`, 'a client without SNI is served');
  if (requireClientCertificate && context.validation === null) {
    invalid(`${field}.typed_config: require_client_certificate without a validation context`);
  }
  return { context, requireClientCertificate };
}

/** An SDS Secret → its name and model (tls_certificate or validation_context). */
export function translateSecret(bytes: Uint8Array): { name: string; secret: SecretModel } {
  const s = decodeMessage<Plain>(MESSAGE_NAMES.Secret, bytes);
  if (!s.name) invalid('name: missing');
  if (s.tls_certificate) return { name: s.name, secret: tlsCertificate(s.tls_certificate, 'tls_certificate') };
  if (s.validation_context) {
    const { ca } = validationContext(s.validation_context, 'validation_context');
    if (ca === null) invalid('validation_context.trusted_ca: missing');
    return { name: s.name, secret: ca };
  }
  return invalid('type: only tls_certificate and validation_context are supported');
}
