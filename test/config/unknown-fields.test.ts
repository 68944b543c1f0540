// Config carrying fields Pillion's trimmed protos do not declare, encoded with Envoy's own .proto files: each
// is named in a warning (never dropped silently), and the verification settings that would loosen mTLS if
// dropped are refused (NACKed) by name.
import { describe, expect, it } from 'vitest';
import { envoyRoot } from './envoy-protos.js';
import { buildSnapshot, type RawResource } from '../../src/config/snapshot.js';
import { TYPE_URLS } from '../../src/config/protos.js';

const root = envoyRoot(['envoy/config/cluster/v3/cluster.proto', 'envoy/extensions/transport_sockets/tls/v3/tls.proto']);
const Cluster = root.lookupType('envoy.config.cluster.v3.Cluster');
const Upstream = root.lookupType('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext');

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function cluster(extra: Record<string, unknown>, validation: Record<string, unknown> = {}): RawResource {
  const tls = Upstream.encode(
    Upstream.fromObject({ common_tls_context: { validation_context: { trusted_ca: { inline_string: PEM }, ...validation } } }),
  ).finish();
  const plain = {
    name: 'c',
    type: 'STATIC',
    connect_timeout: { seconds: 1 },
    load_assignment: { cluster_name: 'c', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 1 } } } }] }] },
    transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: { type_url: `type.googleapis.com/${Upstream.fullName.slice(1)}`, value: tls } },
    ...extra,
  };
  return { name: 'c', typeUrl: TYPE_URLS.Cluster, value: Cluster.encode(Cluster.fromObject(plain)).finish() };
}

const build = (r: RawResource) => buildSnapshot({ listeners: [], routes: [], clusters: [r], endpoints: [] }, 'v1');

describe('fields Pillion does not know', () => {
  it('accepts a cluster with no such field without a warning', () => {
    const { errors, warnings } = build(cluster({}));
    expect(errors).toEqual([]);
    expect(warnings).toEqual([]);
  });

  it('names each unknown field in a warning, with its path, and still serves the rest', () => {
    // Cluster.dns_lookup_family (17) and Cluster.upstream_connection_options (30) are not in Pillion's Cluster.
    const { snapshot, errors, warnings } = build(cluster({ dns_lookup_family: 'V4_ONLY', upstream_connection_options: { tcp_keepalive: { keepalive_time: { value: 30 } } } }));
    expect(errors).toEqual([]);
    expect(snapshot.clusters.has('c')).toBe(true);
    const messages = warnings.map((w) => w.message);
    expect(messages).toContainEqual(expect.stringMatching(/^envoy\.config\.cluster\.v3\.Cluster: <field 17>: accepted but not enforced/));
    expect(messages).toContainEqual(expect.stringMatching(/^envoy\.config\.cluster\.v3\.Cluster: <field 30>: /));
  });

  it('names a repeated unknown field once, and still names the unknown fields after its entries', () => {
    // Cluster.filters (40, repeated) first with more entries than the report holds, then dns_lookup_family (17).
    const base = cluster({ dns_lookup_family: 'V4_ONLY' });
    const filters = Cluster.encode(Cluster.fromObject({ filters: Array.from({ length: 12 }, (_v, i) => ({ name: `f${i}` })) })).finish();
    const value = new Uint8Array([...filters, ...base.value]);
    const { errors, warnings } = build({ ...base, value });
    expect(errors).toEqual([]);
    const messages = warnings.map((w) => w.message);
    expect(messages.filter((m) => m.startsWith('envoy.config.cluster.v3.Cluster: <field 40>: '))).toHaveLength(1);
    expect(messages).toContainEqual(expect.stringMatching(/^envoy\.config\.cluster\.v3\.Cluster: <field 17>: /));
  });

  it('finds unknown fields inside nested messages and inside Any payloads', () => {
    // CommonTlsContext.key_log (15) inside the UpstreamTlsContext packed in the transport socket's Any.
    const tls = Upstream.encode(
      Upstream.fromObject({ common_tls_context: { validation_context: { trusted_ca: { inline_string: PEM } }, key_log: { path: '/tmp/keys' } } }),
    ).finish();
    const r = cluster({ transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: { type_url: `type.googleapis.com/${Upstream.fullName.slice(1)}`, value: tls } } });
    const { warnings } = build(r);
    expect(warnings.map((w) => w.message)).toContainEqual(
      expect.stringMatching(/^envoy\.extensions\.transport_sockets\.tls\.v3\.UpstreamTlsContext: common_tls_context\.<field 15>: /),
    );
  });

  it.each([
    ['crl', { crl: { inline_string: PEM } }, /validation_context\.crl: certificate revocation lists are not supported/],
    ['custom_validator_config', { custom_validator_config: { name: 'x' } }, /custom_validator_config: not supported/],
    ['max_verify_depth', { max_verify_depth: { value: 1 } }, /max_verify_depth: not supported/],
    ['require_signed_certificate_timestamp', { require_signed_certificate_timestamp: { value: true } }, /require_signed_certificate_timestamp: not supported/],
  ])('refuses a validation context with %s instead of verifying less than it says', (_name, validation, message) => {
    const { snapshot, errors } = build(cluster({}, validation));
    expect(snapshot.clusters.has('c')).toBe(false);
    expect(errors.map((e) => e.message)).toContainEqual(expect.stringMatching(message));
  });

  it('warns that ACCEPT_UNTRUSTED is not honoured (untrusted peers stay refused)', () => {
    const { errors, warnings } = build(cluster({}, { trust_chain_verification: 'ACCEPT_UNTRUSTED' }));
    expect(errors).toEqual([]);
    expect(warnings.map((w) => w.message)).toContainEqual(expect.stringMatching(/trust_chain_verification: accepted but not enforced yet \(untrusted certificates are still refused\)/));
  });
});
