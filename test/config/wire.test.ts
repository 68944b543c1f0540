import * as protoLoader from '@grpc/proto-loader';
import { describe, expect, it } from 'vitest';
import { compileForNode } from '../../xds/compiler.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { encodeMessage, MESSAGE_NAMES, PROTO_DIR, protoFiles } from '../../src/config/protos.js';
import { MESH_YAML } from './mesh-fixture.js';
import { envoyRoot, fieldNumbers } from './envoy-protos.js';

describe('wire compatibility with Envoy', () => {
  it('puts fields at Envoy field numbers', () => {
    const cluster = encodeMessage(MESSAGE_NAMES.Cluster, { name: 'c', type: 'EDS', connect_timeout: { seconds: 1 }, lb_policy: 'LEAST_REQUEST' });
    expect(fieldNumbers(cluster)).toEqual([1, 2, 4, 6]);
    // name=1 "c": 0x0a 0x01 0x63; type=2 EDS(3): 0x10 0x03; connect_timeout=4 {seconds:1}: 0x22 0x02 0x08 0x01; lb_policy=6: 0x30 0x01
    expect([...cluster]).toEqual([0x0a, 0x01, 0x63, 0x10, 0x03, 0x22, 0x02, 0x08, 0x01, 0x30, 0x01]);
    const listener = encodeMessage(MESSAGE_NAMES.Listener, {
      name: 'l', address: { socket_address: { address: '0.0.0.0', port_value: 1 } }, filter_chains: [{}],
    });
    expect(fieldNumbers(listener)).toEqual([1, 2, 3]);
    const cla = encodeMessage(MESSAGE_NAMES.ClusterLoadAssignment, { cluster_name: 'c', endpoints: [{}] });
    expect(fieldNumbers(cla)).toEqual([1, 2]);
  });

  it('decodes every compiled resource with the full Envoy protos shipped in @grpc/grpc-js-xds', () => {
    const root = envoyRoot([
      'envoy/config/listener/v3/listener.proto', 'envoy/config/route/v3/route.proto', 'envoy/config/cluster/v3/cluster.proto',
      'envoy/config/endpoint/v3/endpoint.proto', 'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
      'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto', 'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
      'envoy/extensions/filters/http/router/v3/router.proto',
      'envoy/extensions/load_balancing_policies/ring_hash/v3/ring_hash.proto',
      'envoy/extensions/load_balancing_policies/round_robin/v3/round_robin.proto',
    ]);
    const res = compileForNode(parseMeshConfig(MESH_YAML), {
      id: 'f', service: 'frontend', namespace: 'default', serviceAccount: 'f', appPort: 8080, inboundPort: 15006, outboundPort: 15001,
    });
    // json: true renders Any as {'@type', ...fields} (decoded by Envoy's own message); wrappers stay {value}.
    const opts = { enums: String, longs: Number, json: true };
    const cluster = root.lookupType('envoy.config.cluster.v3.Cluster')
      .toObject(root.lookupType('envoy.config.cluster.v3.Cluster').decode(res.clusters.find((c) => c.name === 'sessions.default:7000')!.value), opts);
    expect(cluster).toMatchObject({
      name: 'sessions.default:7000', type: 'EDS', lb_policy: 'RING_HASH',
      ring_hash_lb_config: { minimum_ring_size: { value: 2048 } },
      eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          explicit_http_config: { http2_protocol_options: {} },
        },
      },
    });
    expect(cluster.load_balancing_policy).toBeUndefined();
    const L = root.lookupType('envoy.config.listener.v3.Listener');
    const outbound = L.toObject(L.decode(res.listeners[0]!.value), opts);
    expect(outbound).toMatchObject({
      name: 'outbound', address: { socket_address: { address: '127.0.0.1', port_value: 15001 } },
      filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
        codec_type: 'AUTO', stat_prefix: 'outbound', rds: { route_config_name: 'outbound', config_source: { ads: {} } },
        http_filters: [{ name: 'envoy.filters.http.router' }],
      } }] }],
    });
    const R = root.lookupType('envoy.config.route.v3.RouteConfiguration');
    const rc = R.toObject(R.decode(res.routes[0]!.value), opts);
    const backend = rc.virtual_hosts.find((v: any) => v.name === 'backend.default:8080');
    expect(backend.routes[0]).toMatchObject({
      match: { prefix: '/api', headers: [{ name: 'x-canary', string_match: { exact: '1' } }] },
      route: { weighted_clusters: { clusters: [{ name: 'backend-v2.default:8080', weight: { value: 10 } }, { name: 'backend.default:8080', weight: { value: 90 } }] }, timeout: { seconds: 2 } },
    });
    expect(backend.routes[1]).toMatchObject({ match: { path: '/health' } });
    expect(backend.routes[2].route.retry_policy).toMatchObject({ retry_on: '5xx,reset,connect-failure,retriable-status-codes', num_retries: { value: 2 }, per_try_timeout: { seconds: 1 }, retriable_status_codes: [503] });
    const E = root.lookupType('envoy.config.endpoint.v3.ClusterLoadAssignment');
    const cla = E.toObject(E.decode(res.endpoints.find((e) => e.name === 'backend.default:8080')!.value), opts);
    expect(cla.endpoints[0]).toMatchObject({
      locality: { region: 'r1', zone: 'a' },
      lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: 18081 } } }, health_status: 'HEALTHY', load_balancing_weight: { value: 2 } }],
    });
  });

  it('loads with @grpc/proto-loader (the ADS service for the control server)', () => {
    const def = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', { includeDirs: [PROTO_DIR], keepCase: true });
    expect(def['envoy.service.discovery.v3.AggregatedDiscoveryService']).toBeDefined();
    const all = protoLoader.loadSync(protoFiles(), { includeDirs: [PROTO_DIR] });
    expect(all['envoy.config.cluster.v3.Cluster']).toBeDefined();
  });
});
