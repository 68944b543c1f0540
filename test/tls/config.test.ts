// The mTLS config path: the compiler's transport sockets read by Envoy's own .proto files at their field
// numbers, the translators (Cluster/FilterChain transport_socket, SDS Secret), STRICT/PERMISSIVE from filter
// chains, and the SDS subscription the xDS client derives from accepted listeners and clusters.
import { describe, expect, it } from 'vitest';
import type protobuf from 'protobufjs';
import { envoyRoot } from '../config/envoy-protos.js';
import { compileForNode, type NodeInfo } from '../../xds/compiler.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { buildSnapshot, type RawResource } from '../../src/config/snapshot.js';
import { anyField, decodeAny, decodeMessage, encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import { SubscriptionState } from '../../src/xds/subscriptions.js';
import { downstreamTls } from '../../src/config/transport-socket.js';
import { collectWarnings } from '../../src/config/values.js';

const MESH = `
trustDomain: example.org
services:
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 15006 }]
  - name: api
    serviceAccount: api-sa
    namespace: prod
    ports: [{ port: 9090, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: 15006 }]
    policy: { mtls: PERMISSIVE }
  - name: plain
    ports: [{ port: 80, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 15006 }]
    policy: { mtls: DISABLE }
`;

const node = (service: string, namespace = 'default', identity = true): NodeInfo => ({
  id: `n~${service}`,
  service,
  namespace,
  serviceAccount: service,
  appPort: 8080,
  inboundPort: 15006,
  outboundPort: 15001,
  ...(identity ? { workloadIdentity: true } : {}),
});

const TLS_PROTOS = [
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/transport_sockets/tls/v3/secret.proto',
];

const unpackAny = (root: protobuf.Root, any: { type_url: string; value: Uint8Array }) => {
  const T = root.lookupType(any.type_url.slice(any.type_url.lastIndexOf('/') + 1));
  return T.toObject(T.decode(any.value), { enums: String, longs: Number });
};

describe('the compiler, read by Envoy', () => {
  const mesh = parseMeshConfig(MESH);
  const root = envoyRoot(TLS_PROTOS);
  const C = root.lookupType('envoy.config.cluster.v3.Cluster');
  const L = root.lookupType('envoy.config.listener.v3.Listener');

  it('gives clusters to mesh services an UpstreamTlsContext with SDS secrets and the target service account SAN', () => {
    const r = compileForNode(mesh, node('web'));
    const api = C.toObject(C.decode(r.clusters.find((c) => c.name === 'api.prod:9090')!.value));
    expect(api.transport_socket.name).toBe('envoy.transport_sockets.tls');
    const ctx = unpackAny(root, api.transport_socket.typed_config);
    expect(ctx.common_tls_context.tls_certificate_sds_secret_configs).toEqual([{ name: 'default', sds_config: { ads: {}, resource_api_version: 'V3' } }]);
    expect(ctx.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name).toBe('ROOTCA');
    expect(ctx.common_tls_context.combined_validation_context.default_validation_context.match_typed_subject_alt_names).toEqual([
      { san_type: 'URI', matcher: { exact: 'spiffe://example.org/ns/prod/sa/api-sa' } },
    ]);
    const plain = C.toObject(C.decode(r.clusters.find((c) => c.name === 'plain.default:80')!.value));
    expect(plain.transport_socket).toBeUndefined();
  });

  it('gives the inbound listener TLS chains (STRICT: only those; PERMISSIVE: raw_buffer ones too) with a tls_inspector', () => {
    const strict = L.toObject(L.decode(compileForNode(mesh, node('web')).listeners.find((l) => l.name === 'inbound')!.value));
    expect(strict.listener_filters[0].name).toBe('envoy.filters.listener.tls_inspector');
    expect(strict.filter_chains.map((c: { filter_chain_match: { transport_protocol: string } }) => c.filter_chain_match.transport_protocol)).toEqual(['tls']);
    const down = unpackAny(root, strict.filter_chains[0].transport_socket.typed_config);
    expect(down.require_client_certificate).toEqual({ value: true });
    expect(down.common_tls_context.validation_context_sds_secret_config.name).toBe('ROOTCA');
    const permissive = L.toObject(L.decode(compileForNode(mesh, node('api', 'prod')).listeners.find((l) => l.name === 'inbound')!.value));
    expect(permissive.filter_chains.map((c: { filter_chain_match: { transport_protocol: string } }) => c.filter_chain_match.transport_protocol)).toEqual(['tls', 'raw_buffer']);
  });

  it('keeps plaintext for a node without a workload identity, and for mtls: DISABLE', () => {
    const r = compileForNode(mesh, node('web', 'default', false));
    const snap = buildSnapshot(r, 'v').snapshot;
    expect([...snap.clusters.values()].some((c) => c.tls !== undefined)).toBe(false);
    expect(snap.listeners.get('inbound')!.tls).toBeUndefined();
    const disabled = buildSnapshot(compileForNode(mesh, node('plain')), 'v').snapshot;
    expect(disabled.listeners.get('inbound')!.tls).toBeUndefined();
  });

  it('translates what it compiled: STRICT and PERMISSIVE listeners, TLS clusters', () => {
    const web = buildSnapshot(compileForNode(mesh, node('web')), 'v');
    expect(web.errors).toEqual([]);
    expect(web.snapshot.listeners.get('inbound')!.tls).toMatchObject({ requireClientCertificate: true, plaintext: false });
    expect(web.snapshot.clusters.get('api.prod:9090')!.tls!.context.sanMatchers).toEqual([
      { sanType: 'URI', match: 'exact', value: 'spiffe://example.org/ns/prod/sa/api-sa', ignoreCase: false },
    ]);
    const api = buildSnapshot(compileForNode(mesh, node('api', 'prod')), 'v');
    expect(api.snapshot.listeners.get('inbound')!.tls!.plaintext).toBe(true);
  });
});

const tlsSocket = (typeName: string, ctx: object) => ({ name: 'envoy.transport_sockets.tls', typed_config: anyField(typeName, ctx) });
const clusterWith = (ts: object): RawResource => ({
  name: 'c',
  typeUrl: TYPE_URLS.Cluster,
  value: encodeMessage(MESSAGE_NAMES.Cluster, { name: 'c', type: 'STATIC', connect_timeout: { seconds: 1 }, transport_socket: ts }),
});
const build = (clusters: RawResource[], secrets: RawResource[] = []) => buildSnapshot({ listeners: [], routes: [], clusters, endpoints: [], secrets }, 'v');

describe('translation', () => {
  it('reads inline certificates and a CA, and refuses what it cannot honour, naming the field', () => {
    const ok = build([
      clusterWith(
        tlsSocket(MESSAGE_NAMES.UpstreamTlsContext, {
          common_tls_context: {
            tls_certificates: [{ certificate_chain: { inline_string: 'CERT' }, private_key: { inline_string: 'KEY' } }],
            validation_context: { trusted_ca: { inline_string: 'CA' }, match_subject_alt_names: [{ prefix: 'spiffe://td/' }] },
          },
          sni: 'web.example',
        }),
      ),
    ]);
    expect(ok.errors).toEqual([]);
    const tls = ok.snapshot.clusters.get('c')!.tls!;
    expect(tls.sni).toBe('web.example');
    expect(tls.context.certificate).toEqual({ kind: 'inline', secret: { kind: 'tls_certificate', certChainPem: 'CERT', privateKeyPem: 'KEY' } });
    expect(tls.context.sanMatchers).toEqual([{ sanType: 'URI', match: 'prefix', value: 'spiffe://td/', ignoreCase: false }]);

    const bad = build([clusterWith({ name: 'envoy.transport_sockets.alts' })]);
    expect(bad.errors[0]!.message).toContain('transport_socket.name: envoy.transport_sockets.alts is not supported');
    const noCa = build([
      clusterWith(tlsSocket(MESSAGE_NAMES.UpstreamTlsContext, { common_tls_context: { validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: 'x' } }] } } })),
    ]);
    expect(noCa.errors[0]!.message).toContain('SAN matchers without a trusted CA');
  });

  it('takes tls_params (version range, TLS 1.2 cipher suites, curves), refuses what cannot be served, and warns about require_sni, which it does not enforce', () => {
    const context = (extra: object) =>
      tlsSocket(MESSAGE_NAMES.UpstreamTlsContext, { common_tls_context: { validation_context: { trusted_ca: { inline_string: 'CA' } }, ...extra } });
    const paramsOf = (params: object) => {
      const r = build([clusterWith(context({ tls_params: params }))]);
      return { errors: r.errors.map((e) => e.message), warnings: r.warnings.map((w) => w.message), params: r.snapshot?.clusters.get('c')?.tls?.context.params };
    };
    expect(paramsOf({ tls_minimum_protocol_version: 'TLSv1_2' })).toMatchObject({ errors: [], warnings: [], params: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', cipherSuites: null, ecdhCurves: null } });
    expect(
      paramsOf({ tls_minimum_protocol_version: 'TLSv1_3', cipher_suites: ['[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]', 'ECDHE-RSA-AES256-GCM-SHA384'], ecdh_curves: ['X25519', 'P-256'] }),
    ).toMatchObject({
      errors: [],
      warnings: [],
      params: { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', cipherSuites: ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-AES256-GCM-SHA384'], ecdhCurves: ['X25519', 'P-256'] },
    });
    const at = 'transport_socket.typed_config.common_tls_context.tls_params';
    expect(paramsOf({ tls_minimum_protocol_version: 'TLSv1_3', tls_maximum_protocol_version: 'TLSv1_2' }).errors[0]).toContain(`${at}: tls_minimum_protocol_version TLSv1_3 is above tls_maximum_protocol_version TLSv1_2`);
    expect(paramsOf({ tls_maximum_protocol_version: 'TLSv1_1' }).errors[0]).toContain(`${at}.tls_maximum_protocol_version: TLSv1_1 is below TLS 1.2`);
    expect(paramsOf({ cipher_suites: ['ECDHE-RSA-AES128-GCM-SHA256', 'NOT-A-CIPHER'] }).errors[0]).toContain(`${at}.cipher_suites[1]: unknown cipher suite "NOT-A-CIPHER"`);
    expect(paramsOf({ cipher_suites: ['TLS_AES_128_GCM_SHA256'] }).errors[0]).toContain(`${at}.cipher_suites: no TLS 1.2 suite left`);
    expect(paramsOf({ ecdh_curves: ['P-256', 'brainpool'] }).errors[0]).toContain(`${at}.ecdh_curves[1]: unknown curve "brainpool"`);
    const older = paramsOf({ tls_minimum_protocol_version: 'TLSv1_0', cipher_suites: ['TLS_AES_128_GCM_SHA256', 'ECDHE-RSA-AES128-GCM-SHA256'] });
    expect(older.errors).toEqual([]);
    expect(older.warnings.map((w) => w.replace(/ \(.*\)$/, ''))).toEqual([
      `${at}.tls_minimum_protocol_version: accepted but not enforced yet`,
      `${at}.cipher_suites[0]: accepted but not enforced yet`,
    ]);
    const server = (requireSni: boolean) =>
      collectWarnings(() =>
        downstreamTls(
          tlsSocket(MESSAGE_NAMES.DownstreamTlsContext, {
            common_tls_context: { tls_certificates: [{ certificate_chain: { inline_string: 'CERT' }, private_key: { inline_string: 'KEY' } }] },
            require_sni: { value: requireSni },
          }),
          'transport_socket',
        ),
      ).warnings;
    expect(server(false)).toEqual([]);
    expect(server(true)).toEqual(['transport_socket.typed_config.require_sni: accepted but not enforced yet (a client without SNI is served)']);
  });

  it('translates SDS Secrets (tls_certificate, validation_context) and NACKs one of another kind', () => {
    const secret = (name: string, body: object): RawResource => ({ name, typeUrl: TYPE_URLS.Secret, value: encodeMessage(MESSAGE_NAMES.Secret, { name, ...body }) });
    const r = build([], [
      secret('default', { tls_certificate: { certificate_chain: { inline_bytes: Buffer.from('C') }, private_key: { inline_bytes: Buffer.from('K') } } }),
      secret('ROOTCA', { validation_context: { trusted_ca: { inline_bytes: Buffer.from('CA') } } }),
    ]);
    expect(r.errors).toEqual([]);
    expect(r.secrets.get('default')).toEqual({ kind: 'tls_certificate', certChainPem: 'C', privateKeyPem: 'K' });
    expect(r.secrets.get('ROOTCA')).toEqual({ kind: 'validation_context', trustedCaPem: 'CA' });
    expect(build([], [secret('x', {})]).errors[0]!.message).toContain('only tls_certificate and validation_context');
  });

  it('writes Secrets Envoy reads at its field numbers', () => {
    const S = envoyRoot(TLS_PROTOS).lookupType('envoy.extensions.transport_sockets.tls.v3.Secret');
    const bytes = encodeMessage(MESSAGE_NAMES.Secret, { name: 'default', tls_certificate: { certificate_chain: { inline_string: 'C' }, private_key: { inline_string: 'K' } } });
    expect(S.toObject(S.decode(bytes))).toEqual({ name: 'default', tls_certificate: { certificate_chain: { inline_string: 'C' }, private_key: { inline_string: 'K' } } });
  });
});

describe('/config_dump', () => {
  it('shows a transport socket decoded, with an inline private key redacted', async () => {
    const { Proxy } = await import('../../src/proxy.js');
    const { pino } = await import('pino');
    const proxy = new Proxy({ adminPort: -1, logger: pino({ level: 'silent' }), accessLog: 'off', processMetrics: false });
    try {
      const cluster = clusterWith(
        tlsSocket(MESSAGE_NAMES.UpstreamTlsContext, {
          common_tls_context: { tls_certificates: [{ certificate_chain: { inline_string: 'CERT' }, private_key: { inline_string: 'SECRET-KEY' } }] },
        }),
      );
      // The inline material does not load (it is not PEM): the cluster is applied and answers tls_not_ready.
      const applied = await proxy.apply({ listeners: [], routes: [], clusters: [cluster], endpoints: [] }, 'v1');
      expect(applied.errors).toEqual([]);
      const text = JSON.stringify(proxy.configDump());
      expect(text).not.toContain('SECRET-KEY');
      expect(text).toContain('[redacted]');
      expect(text).toContain('"certificate_chain":{"inline_string":"CERT"');
    } finally {
      await proxy.stop();
    }
  });
});

describe('mtls on an auto (sniffed) port', () => {
  it('translates STRICT and PERMISSIVE listeners with both an HTTP and a TCP chain', () => {
    const mesh = parseMeshConfig(`
services:
  - name: mixed
    ports: [{ port: 9000, protocol: auto }]
    endpoints: [{ address: 127.0.0.1, port: 15006 }]
  - name: mixedp
    ports: [{ port: 9000, protocol: auto }]
    endpoints: [{ address: 127.0.0.1, port: 15006 }]
    policy: { mtls: PERMISSIVE }
`);
    for (const [service, plaintext] of [['mixed', false], ['mixedp', true]] as const) {
      const r = buildSnapshot(compileForNode(mesh, node(service)), 'v');
      expect(r.errors).toEqual([]);
      const inbound = r.snapshot.listeners.get('inbound')!;
      expect(inbound.http).toBeDefined();
      expect(inbound.tcp).toBeDefined();
      expect(inbound.tls!.plaintext).toBe(plaintext);
    }
  });
});

describe('PERMISSIVE plaintext chains', () => {
  const mesh = parseMeshConfig(`
services:
  - name: mixedp
    ports: [{ port: 9000, protocol: auto }]
    endpoints: [{ address: 127.0.0.1, port: 15006 }]
    policy: { mtls: PERMISSIVE }
`);
  const filterWarnings = (r: ReturnType<typeof buildSnapshot>) => r.warnings.filter((w) => /filters: accepted but not enforced/.test(w.message));

  it('say by name when a plaintext chain has filters of its own, which the TLS chain\'s replace', () => {
    const resources = compileForNode(mesh, node('mixedp'));
    expect(filterWarnings(buildSnapshot(resources, 'v'))).toEqual([]);
    const listeners = resources.listeners.map((res) => {
      if (res.name !== 'inbound') return res;
      const l = decodeMessage<Record<string, any>>(MESSAGE_NAMES.Listener, res.value);
      const plain = l.default_filter_chain; // the plaintext TCP chain
      const last = plain.filters.at(-1);
      last.typed_config = anyField(TYPE_URLS.TcpProxy, { ...decodeAny<Record<string, unknown>>(last.typed_config), stat_prefix: 'plaintext_only' });
      return { ...res, value: encodeMessage(MESSAGE_NAMES.Listener, l) };
    });
    const r = buildSnapshot({ ...resources, listeners }, 'v');
    expect(r.errors).toEqual([]);
    expect(filterWarnings(r)).toEqual([
      expect.objectContaining({ name: 'inbound', message: 'default_filter_chain.filters: accepted but not enforced yet (plaintext connections get the filters of filter_chains[1])' }),
    ]);
  });
});

describe('the SDS subscription', () => {
  it('subscribes to the secrets accepted clusters name, and is not needed for warming', () => {
    const state = new SubscriptionState();
    state.streamStarted();
    const r = compileForNode(parseMeshConfig(MESH), node('web'));
    const pending = state.prepare({ typeUrl: TYPE_URLS.Cluster, versionInfo: '1', nonce: 'n1', resources: r.clusters.map((c) => ({ typeUrl: c.typeUrl, value: c.value })) });
    if ('ignore' in pending) throw new Error(pending.ignore);
    const verdict = state.settle(pending, { applied: true, errors: [] });
    const sds = verdict.requests.find((q) => q.typeUrl === TYPE_URLS.Secret);
    expect(sds?.resourceNames).toEqual(['ROOTCA', 'default']);
    expect(state.names('secrets')).toEqual(['ROOTCA', 'default']);
  });
});
