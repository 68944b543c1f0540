// The proto3 JSON walker and the field mask, on messages of our protos: the values Envoy tooling parses.
import { describe, expect, it } from 'vitest';
import { anyField, encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../config/protos.js';
import { anyToJson, durationJson, type Json } from './proto-json.js';
import { applyMask, parseMask } from './field-mask.js';

describe('durationJson', () => {
  it('prints 0, 3, 6 or 9 fractional digits, as proto3 JSON wants', () => {
    expect(durationJson('1', 0)).toBe('1s');
    expect(durationJson('0', 250_000_000)).toBe('0.250s');
    expect(durationJson('2', 1_000)).toBe('2.000001s');
    expect(durationJson('0', 5)).toBe('0.000000005s');
    expect(durationJson('-1', -500_000_000)).toBe('-1.500s');
  });
});

describe('anyToJson', () => {
  it('types nested Anys, unwraps wrappers, names enums, drops oneof names and redacts keys', () => {
    const bytes = encodeMessage(MESSAGE_NAMES.Cluster, {
      name: 'c',
      type: 'STATIC',
      connect_timeout: { seconds: 2, nanos: 500_000_000 },
      per_connection_buffer_limit_bytes: { value: 0 },
      circuit_breakers: { thresholds: [{ max_connections: { value: 7 } }] },
      transport_socket: {
        name: 'tls',
        typed_config: anyField(MESSAGE_NAMES.UpstreamTlsContext, {
          common_tls_context: { tls_certificates: [{ certificate_chain: { inline_string: 'C' }, private_key: { inline_string: 'K' } }] },
        }),
      },
    });
    const j = anyToJson(TYPE_URLS.Cluster, bytes);
    expect(j).toMatchObject({
      '@type': TYPE_URLS.Cluster,
      name: 'c',
      type: 'STATIC',
      connect_timeout: '2.500s',
      per_connection_buffer_limit_bytes: 0,
      circuit_breakers: { thresholds: [{ max_connections: 7 }] },
      transport_socket: {
        name: 'tls',
        typed_config: {
          '@type': TYPE_URLS.UpstreamTlsContext,
          common_tls_context: { tls_certificates: [{ certificate_chain: { inline_string: 'C' }, private_key: { inline_string: '[redacted]' } }] },
        },
      },
    });
    expect(JSON.stringify(j)).not.toContain('cluster_discovery_type');
    expect(JSON.stringify(j)).not.toContain('"K"');
  });
});

describe('field mask', () => {
  it('keeps named paths through arrays, keeps @type, and a parent path wins over its children', () => {
    const v: Json = { '@type': 't', a: [{ b: 1, c: 2 }, { b: 3 }], d: { e: 1, f: 2 }, g: 1 };
    expect(applyMask(v, parseMask('a.b, d'))).toEqual({ '@type': 't', a: [{ b: 1 }, { b: 3 }], d: { e: 1, f: 2 } });
    expect(applyMask(v, parseMask('d.e,d'))).toEqual({ '@type': 't', d: { e: 1, f: 2 } });
    expect(applyMask(v, parseMask('nothing'))).toEqual({ '@type': 't' });
  });
});
