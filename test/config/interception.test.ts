// What a node with `--interception redirect` gets from the compiler, read back through the translators and, for
// the Envoy fields (Listener use_original_dst / bind_to_port, Cluster type ORIGINAL_DST / lb_policy
// CLUSTER_PROVIDED), through Envoy's own .proto files; plus the mesh config fields it reads.
import { describe, expect, it } from 'vitest';
import { buildSnapshot } from '../../src/config/snapshot.js';
import { translateCluster } from '../../src/config/cluster.js';
import { compileForNode, nodeInfoFromXdsNode, nodeToXds, type NodeInfo } from '../../xds/compiler.js';
import { checkMeshConfig, parseMeshConfig } from '../../xds/mesh-config.js';
import { encodeMessage, MESSAGE_NAMES } from '../../src/config/protos.js';
import { envoyRoot } from './envoy-protos.js';
import { RouteTable } from '../../src/http/context.js';
import { TYPE_URLS } from '../../src/config/protos.js';

const MESH = `
outboundTrafficPolicy: { mode: MODE }
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 10.99.1.2, port: 8080 }]
  - name: server
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 10.99.1.1, port: 8080 }, { address: "FD99:1:0::1", port: 8080 }]
  - name: db
    addresses: [10.96.0.20]
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 10.99.1.3, port: 15432 }, { address: db-0.example, port: 5432 }]
`;

const NODE: NodeInfo = {
  id: 'client-1', service: 'client', namespace: 'default', serviceAccount: 'client',
  appPort: 8080, inboundPort: 15006, outboundPort: 15001, interception: 'REDIRECT',
};

function compile(mode: 'ALLOW_ANY' | 'REGISTRY_ONLY', node: NodeInfo = NODE) {
  const resources = compileForNode(parseMeshConfig(MESH.replace('MODE', mode)), node);
  const { snapshot, errors } = buildSnapshot(resources, 'v1');
  expect(errors).toEqual([]);
  return { resources, snapshot };
}

describe('transparent interception in the compiled config', () => {
  it('binds the outbound listener on every address with use_original_dst, and its fallback follows outboundTrafficPolicy', () => {
    const allow = compile('ALLOW_ANY').snapshot;
    const outbound = allow.listeners.get('outbound')!;
    expect(outbound).toMatchObject({ address: '::', port: 15001, useOriginalDst: true, bindToPort: true });
    expect(outbound.http?.routeConfigName).toBe('outbound');
    expect(outbound.tcp?.cluster).toBe('PassthroughCluster');
    expect(allow.clusters.get('PassthroughCluster')).toMatchObject({ originalDst: true, endpoints: [] });
    expect(allow.listeners.get('inbound')).toMatchObject({ address: '::', port: 15006 });

    const registryOnly = compile('REGISTRY_ONLY').snapshot;
    expect(registryOnly.listeners.get('outbound')!.tcp?.cluster).toBe('BlackHoleCluster');
    expect(registryOnly.clusters.get('BlackHoleCluster')).toMatchObject({ endpoints: [] });
  });

  it('has one unbound listener per address a service port may be dialed at: virtual addresses and IP endpoints', () => {
    const { snapshot } = compile('ALLOW_ANY');
    const intercept = [...snapshot.listeners.values()].filter((l) => !l.bindToPort && l.direction === 'outbound');
    expect(intercept.map((l) => l.name).sort()).toEqual([
      'outbound|10.96.0.20:5432', 'outbound|10.99.1.1:8080', 'outbound|10.99.1.2:8080', 'outbound|10.99.1.3:15432', 'outbound|[fd99:1::1]:8080',
    ]);
    // TCP: the service's cluster; HTTP: the Host route table, in which the addresses are domains of the service.
    expect(snapshot.listeners.get('outbound|10.96.0.20:5432')!.tcp?.cluster).toBe('db.default:5432');
    expect(snapshot.listeners.get('outbound|10.99.1.3:15432')!.tcp?.cluster).toBe('db.default:5432');
    const http = snapshot.listeners.get('outbound|10.99.1.1:8080')!;
    expect(http).toMatchObject({ address: '10.99.1.1', port: 8080, useOriginalDst: false });
    expect(http.http?.routeConfigName).toBe('outbound');
    const vhosts = snapshot.routeConfigs.get('outbound')!.virtualHosts;
    const byAddress = vhosts.find((v) => v.name === 'server.default:8080|addresses')!;
    expect(byAddress.domains).toEqual(['10.99.1.1:8080', '[fd99:1::1]:8080']);
  });

  it('inbound: the original destination port picks a listener per declared port (its protocol, to 127.0.0.1:PORT); other ports pass through from 127.0.0.6', () => {
    const mesh = parseMeshConfig(
      MESH.replace('MODE', 'ALLOW_ANY').replace(
        "ports: [{ port: 8080, protocol: http }]\n    endpoints: [{ address: 10.99.1.2",
        "ports: [{ port: 8080, protocol: http }, { port: 9100, protocol: tcp }, { port: 7000, protocol: auto }]\n    endpoints: [{ address: 10.99.1.2",
      ),
    );
    const { snapshot, errors } = buildSnapshot(compileForNode(mesh, NODE), 'v1');
    expect(errors).toEqual([]);
    const inbound = snapshot.listeners.get('inbound')!;
    expect(inbound).toMatchObject({ address: '::', port: 15006, useOriginalDst: true, bindToPort: true, direction: 'inbound' });
    expect(inbound.tcp?.cluster).toBe('InboundPassthroughCluster');
    expect(snapshot.clusters.get('InboundPassthroughCluster')).toMatchObject({ originalDst: true, sourceAddresses: ['127.0.0.6', '::6'] });
    const ports = [...snapshot.listeners.values()].filter((l) => !l.bindToPort && l.direction === 'inbound');
    expect(ports.map((l) => l.name).sort()).toEqual(['inbound|7000', 'inbound|8080', 'inbound|9100']);
    expect(snapshot.listeners.get('inbound|8080')!.http).toBeDefined();
    expect(snapshot.listeners.get('inbound|9100')!).toMatchObject({ address: '::', port: 9100, tcp: { cluster: 'inbound:9100' } });
    // auto: sniffed, with the mesh's protocol detection timeout (1 s by default) then TCP.
    expect(snapshot.listeners.get('inbound|7000')!).toMatchObject({ firstByteTimeoutMs: 1000, continueOnFiltersTimeout: true });
    expect(snapshot.clusters.get('inbound:9100')!.endpoints[0]).toMatchObject({ address: '127.0.0.1', port: 9100 });

    const slow = parseMeshConfig(`protocolDetectionTimeout: 250ms\n${MESH.replace('MODE', 'ALLOW_ANY').replace('http }]\n    endpoints: [{ address: 10.99.1.2', 'auto }]\n    endpoints: [{ address: 10.99.1.2')}`);
    const got = buildSnapshot(compileForNode(slow, NODE), 'v1').snapshot;
    expect(got.listeners.get('inbound|8080')!).toMatchObject({ firstByteTimeoutMs: 250, continueOnFiltersTimeout: true });
  });

  it('gives nodes without interception none of it: loopback outbound, no unbound listeners, no address domains', () => {
    const { snapshot, resources } = compile('ALLOW_ANY', { ...NODE, interception: undefined } as NodeInfo);
    expect(snapshot.listeners.get('outbound')).toMatchObject({ address: '127.0.0.1', useOriginalDst: false });
    expect([...snapshot.listeners.values()].filter((l) => !l.bindToPort)).toEqual([]);
    expect(snapshot.clusters.has('PassthroughCluster')).toBe(false);
    expect(snapshot.routeConfigs.get('outbound')!.virtualHosts.some((v) => v.name.endsWith('|addresses'))).toBe(false);
    expect(resources.routes[0]!.value).not.toEqual(compile('ALLOW_ANY').resources.routes[0]!.value);
  });

  it('writes Envoy\'s fields with Envoy\'s numbers (read back with the upstream .proto files)', () => {
    const { resources } = compile('ALLOW_ANY');
    const root = envoyRoot(['envoy/config/listener/v3/listener.proto', 'envoy/config/cluster/v3/cluster.proto']);
    const Listener = root.lookupType('envoy.config.listener.v3.Listener');
    const Cluster = root.lookupType('envoy.config.cluster.v3.Cluster');
    const outbound = Listener.toObject(Listener.decode(resources.listeners.find((r) => r.name === 'outbound')!.value), { enums: String });
    expect(outbound.use_original_dst).toEqual({ value: true });
    const unbound = Listener.toObject(Listener.decode(resources.listeners.find((r) => r.name === 'outbound|10.99.1.1:8080')!.value));
    expect(unbound.bind_to_port).toEqual({ value: false });
    const passthrough = Cluster.toObject(Cluster.decode(resources.clusters.find((r) => r.name === 'PassthroughCluster')!.value), { enums: String });
    expect(passthrough.type).toBe('ORIGINAL_DST');
    expect(passthrough.lb_policy).toBe('CLUSTER_PROVIDED');
    const inboundPassthrough = Cluster.toObject(Cluster.decode(resources.clusters.find((r) => r.name === 'InboundPassthroughCluster')!.value), { enums: String });
    expect(inboundPassthrough.upstream_bind_config).toEqual({
      source_address: { address: '127.0.0.6', port_value: 0 },
      extra_source_addresses: [{ address: { address: '::6', port_value: 0 } }],
    });
    // The intercepting outbound sniffs HTTP and has a TCP fallback: the bounded wait, as Istio writes it.
    expect(Number(outbound.listener_filters_timeout.seconds)).toBe(1);
    expect(outbound.continue_on_listener_filters_timeout).toBe(true);
  });

  it('announces the interception mode in the xDS node metadata (Istio\'s INTERCEPTION_MODE) and reads it back', () => {
    expect(nodeInfoFromXdsNode(nodeToXds(NODE) as Parameters<typeof nodeInfoFromXdsNode>[0]).interception).toBe('REDIRECT');
    expect(nodeInfoFromXdsNode(nodeToXds({ ...NODE, interception: undefined } as NodeInfo) as Parameters<typeof nodeInfoFromXdsNode>[0]).interception).toBeUndefined();
  });

  it('warns by name about listener filters it does not run and chain match criteria it ignores, and not about what it does', () => {
    const { resources } = compile('ALLOW_ANY');
    expect(buildSnapshot(resources, 'v1').warnings.filter((w) => /listener_filters/.test(w.message))).toEqual([]);
    const listener = (listener_filters: object[], filter_chain_match: object = {}) => ({
      name: 'l',
      typeUrl: TYPE_URLS.Listener,
      value: encodeMessage(MESSAGE_NAMES.Listener, {
        name: 'l',
        address: { socket_address: { address: '127.0.0.1', port_value: 1 } },
        listener_filters,
        filter_chains: [{ filter_chain_match, filters: [{ name: 'tcp', typed_config: { type_url: TYPE_URLS.TcpProxy, value: encodeMessage('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', { stat_prefix: 's', cluster: 'c' }) } }] }],
      }),
    });
    const { warnings, errors } = buildSnapshot({ listeners: [listener([{ name: 'envoy.filters.listener.tls_inspector' }, { name: 'envoy.filters.listener.proxy_protocol' }])], routes: [], clusters: [], endpoints: [] }, 'v1');
    expect(errors).toEqual([]);
    expect(warnings.map((w) => w.message)).toEqual(['listener_filters[1]: envoy.filters.listener.proxy_protocol: accepted but not enforced yet (connections do not pass through it)']);
    // Chains are chosen by transport and protocol: criteria that would narrow a chain are named too.
    const matched = buildSnapshot({ listeners: [listener([], { destination_port: { value: 8080 }, server_names: ['a.example'], application_protocols: ['h2c'] })], routes: [], clusters: [], endpoints: [] }, 'v1');
    expect(matched.errors).toEqual([]);
    expect(matched.warnings.map((w) => w.message)).toEqual([
      'filter_chains[0].filter_chain_match.destination_port: accepted but not enforced yet (the chain serves every port)',
      'filter_chains[0].filter_chain_match.server_names: accepted but not enforced yet (the chain serves every server name)',
    ]);
  });

  it('translates ORIGINAL_DST clusters only with CLUSTER_PROVIDED, as Envoy', () => {
    const bytes = (c: Record<string, unknown>) => encodeMessage(MESSAGE_NAMES.Cluster, { name: 'c', connect_timeout: { seconds: 1 }, ...c });
    expect(translateCluster(bytes({ type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED' })).model.originalDst).toBe(true);
    expect(() => translateCluster(bytes({ type: 'ORIGINAL_DST' }))).toThrow(/lb_policy: ROUND_ROBIN with type ORIGINAL_DST/);
    expect(() => translateCluster(bytes({ type: 'STATIC', lb_policy: 'CLUSTER_PROVIDED' }))).toThrow(/CLUSTER_PROVIDED is not supported without type ORIGINAL_DST/);
    // The host is taken from the connection only: a config asking for the header is told so.
    const od = { type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', original_dst_lb_config: { use_http_header: true } };
    const { warnings } = buildSnapshot({ listeners: [], routes: [], endpoints: [], clusters: [{ name: 'c', typeUrl: TYPE_URLS.Cluster, value: bytes(od) }] }, 'v1');
    expect(warnings.map((w) => w.message).join('\n')).toMatch(/original_dst_lb_config\.use_http_header: accepted but not enforced yet \(.*x-envoy-original-dst-host is not read\)/);
    // upstream_bind_config: an IP, port 0.
    const bind = (address: string, port = 0) => bytes({ type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', upstream_bind_config: { source_address: { address, port_value: port } } });
    expect(translateCluster(bind('127.0.0.6')).model.sourceAddresses).toEqual(['127.0.0.6']);
    expect(() => translateCluster(bind('localhost'))).toThrow(/upstream_bind_config\.source_address\.address: "localhost" is not an IP address/);
    expect(() => translateCluster(bind('127.0.0.6', 9))).toThrow(/port_value: only 0/);
    // extra_source_addresses: one per other family (Envoy's rule), the upstream's family picks.
    const extra = (...addresses: string[]) =>
      bytes({
        type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED',
        upstream_bind_config: { source_address: { address: '127.0.0.6' }, extra_source_addresses: addresses.map((address) => ({ address: { address } })) },
      });
    expect(translateCluster(extra('::6')).model.sourceAddresses).toEqual(['127.0.0.6', '::6']);
    expect(() => translateCluster(extra('127.0.0.7'))).toThrow(/extra_source_addresses\[0\]\.address: a source address of this IP family is already given/);
  });
});

describe('HTTP that no Host names, on an intercepting node', () => {
  it('falls to a catch-all virtual host: allow_any to PassthroughCluster, or block_all answering 502 (REGISTRY_ONLY)', () => {
    const allow = compile('ALLOW_ANY').snapshot.routeConfigs.get('outbound')!.virtualHosts.find((v) => v.domains.includes('*'))!;
    expect(allow.name).toBe('allow_any');
    expect(allow.routes[0]!.action.clusters.map((c) => c.name)).toEqual(['PassthroughCluster']);
    const block = compile('REGISTRY_ONLY').snapshot.routeConfigs.get('outbound')!.virtualHosts.find((v) => v.domains.includes('*'))!;
    expect(block.name).toBe('block_all');
    expect(block.routes[0]!.directResponse).toEqual({ status: 502, body: expect.stringContaining('REGISTRY_ONLY') });
    // Nodes without interception have no catch-all: an unknown Host stays 404 no_route.
    const plain = compile('ALLOW_ANY', { ...NODE, interception: undefined }).snapshot.routeConfigs.get('outbound')!;
    expect(plain.virtualHosts.some((v) => v.domains.includes('*'))).toBe(false);
  });

  it('a Host no virtual host names, on an intercepted connection, is matched again as the dialed address', () => {
    const table = new RouteTable(compile('ALLOW_ANY').snapshot.routeConfigs.get('outbound')!);
    const to = (host: string, dst?: { address: string; port: number }) => table.match(host, 'GET', '/', {}, 'http', dst)?.action.clusters[0]?.name;
    expect(to('no-such.example', { address: '10.99.1.1', port: 8080 })).toBe('server.default:8080');
    expect(to('no-such.example', { address: 'fd99:1::1', port: 8080 })).toBe('server.default:8080');
    // A Host the mesh knows wins over the address; an address it does not know, or no original destination: allow_any.
    expect(to('client', { address: '10.99.1.1', port: 8080 })).toBe('client.default:8080');
    expect(to('no-such.example', { address: '192.0.2.9', port: 8080 })).toBe('PassthroughCluster');
    expect(to('no-such.example')).toBe('PassthroughCluster');
  });

  it('translates a direct_response route, and refuses a status outside 200..599 or a body from a file', () => {
    const rc = (route: Record<string, unknown>) =>
      encodeMessage(MESSAGE_NAMES.RouteConfiguration, { name: 'r', virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, ...route }] }] });
    const build = (route: Record<string, unknown>) => buildSnapshot({ listeners: [], clusters: [], endpoints: [], routes: [{ name: 'r', typeUrl: TYPE_URLS.RouteConfiguration, value: rc(route) }] }, 'v1');
    expect(build({ direct_response: { status: 503, body: { inline_string: 'down' } } }).snapshot.routeConfigs.get('r')!.virtualHosts[0]!.routes[0]!.directResponse).toEqual({ status: 503, body: 'down' });
    expect(build({ direct_response: { status: 99 } }).errors[0]?.message).toMatch(/direct_response\.status: 99 is not within 200\.\.599/);
    expect(build({ direct_response: { status: 502, body: { filename: '/etc/passwd' } } }).errors[0]?.message).toMatch(/direct_response\.body: only inline_string/);
  });
});

describe('mesh config fields for interception', () => {
  it('refuses an unknown outboundTrafficPolicy mode, a DNS name as an address, and an address two services claim', () => {
    expect(() => parseMeshConfig('outboundTrafficPolicy: { mode: ALLOW_SOME }\nservices: []\n')).toThrow(/outboundTrafficPolicy\.mode.*ALLOW_ANY \| REGISTRY_ONLY/);
    expect(() => parseMeshConfig('services:\n  - name: a\n    addresses: [a.example]\n    ports: [{ port: 80 }]\n')).toThrow(/services\[0\]\.addresses\[0\].*IPv4 or IPv6/);
    expect(() => parseMeshConfig('services:\n  - name: a\n    addresses: [10.0.0.1]\n    ports: [{ port: 80 }]\n  - name: b\n    addresses: [10.0.0.1]\n    ports: [{ port: 80 }]\n'))
      .toThrow(/services\[1\]\.addresses\[0\].*already an address of a\.default/);
    expect(parseMeshConfig('services: []\n').outboundTrafficPolicy).toBeUndefined();
    expect(checkMeshConfig({ services: [], outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }).config?.outboundTrafficPolicy).toEqual({ mode: 'REGISTRY_ONLY' });
  });
});
