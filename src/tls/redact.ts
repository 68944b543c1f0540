// /config_dump shows transport sockets decoded (which secrets, which SANs) but never a private key: an inline
// TlsCertificate's private_key is replaced, as Envoy's config dump redacts fields marked sensitive.
import { decodeAny } from '../config/protos.js';

const REDACTED = { inline_string: '[redacted]' };

function redactKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactKeys);
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = k === 'private_key' ? REDACTED : redactKeys(v);
  return out;
}

/** A decoded resource with every transport_socket's typed_config decoded and its keys redacted. */
export function redactTransportSockets(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactTransportSockets);
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const any = k === 'transport_socket' ? (v as { typed_config?: { type_url?: string; value?: Uint8Array } } | undefined)?.typed_config : undefined;
    if (any?.type_url === undefined) {
      out[k] = redactTransportSockets(v);
      continue;
    }
    let decoded: unknown;
    try {
      decoded = redactKeys(decodeAny(any));
    } catch {
      decoded = '[not decodable]';
    }
    out[k] = { ...(v as object), typed_config: { type_url: any.type_url, value: decoded } };
  }
  return out;
}
