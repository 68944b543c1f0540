import { describe, expect, it } from 'vitest';
import { buildSnapshot, type RawResource } from '../../src/config/snapshot.js';
import { anyField, encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';

const res = (kind: keyof typeof MESSAGE_NAMES & keyof typeof TYPE_URLS, name: string, plain: object): RawResource => ({
  name, typeUrl: TYPE_URLS[kind], value: encodeMessage(MESSAGE_NAMES[kind], plain),
});
const addr = (port: number) => ({ socket_address: { address: '127.0.0.1', port_value: port } });
const router = { name: 'envoy.filters.http.router', typed_config: anyField(MESSAGE_NAMES.Router, {}) };
const hcm = (extra: object) => ({
  name: 'envoy.filters.network.http_connection_manager',
  typed_config: anyField(MESSAGE_NAMES.HttpConnectionManager, { stat_prefix: 'x', http_filters: [router], ...extra }),
});

describe('bad resources are dropped and reported; good ones survive', () => {
  it('reports each invalid resource with the field at fault', () => {
    const { snapshot, errors } = buildSnapshot({
      listeners: [
        res('Listener', 'good', { name: 'good', address: addr(1), filter_chains: [{ filters: [hcm({ rds: { route_config_name: 'r' } })] }] }),
        res('Listener', 'noaddr', { name: 'noaddr', filter_chains: [{ filters: [hcm({ rds: { route_config_name: 'r' } })] }] }),
        res('Listener', 'weird', { name: 'weird', address: addr(2), filter_chains: [{ filters: [{ name: 'envoy.filters.network.redis_proxy', typed_config: { type_url: 'type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy', value: new Uint8Array() } }] }] }),
        res('Listener', 'norouter', { name: 'norouter', address: addr(3), filter_chains: [{ filters: [{ name: 'hcm', typed_config: anyField(MESSAGE_NAMES.HttpConnectionManager, { rds: { route_config_name: 'r' } }) }] }] }),
      ],
      routes: [
        res('RouteConfiguration', 'r', { name: 'r', virtual_hosts: [{ name: 'v', domains: ['Example.COM'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c' } }] }] }),
        res('RouteConfiguration', 'nocluster', { name: 'nocluster', virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: {} }] }] }),
        res('RouteConfiguration', 'zero', { name: 'zero', virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { weighted_clusters: { clusters: [{ name: 'a', weight: { value: 0 } }] } } }] }] }),
      ],
      clusters: [
        res('Cluster', 'c', { name: 'c', type: 'EDS', eds_cluster_config: { service_name: 'c-eds' } }),
        res('Cluster', 'maglev', { name: 'maglev', lb_policy: 'MAGLEV' }),
        res('Cluster', 'dns', { name: 'dns', type: 'STRICT_DNS' }),
        res('Cluster', 'mismatch', { name: 'other' }),
      ],
      endpoints: [
        res('ClusterLoadAssignment', 'c-eds', { cluster_name: 'c-eds', endpoints: [{ lb_endpoints: [
          { endpoint: { address: addr(80) } },
          { endpoint: { address: addr(81) }, health_status: 'UNHEALTHY' },
        ] }] }),
      ],
    }, 'v7');
    expect(errors).toEqual([
      { typeUrl: TYPE_URLS.Listener, name: 'noaddr', message: 'address: missing socket_address' },
      { typeUrl: TYPE_URLS.Listener, name: 'weird', message: expect.stringMatching(/^filter_chains\[0\]\.filters\[0\]: unsupported filter envoy\.filters\.network\.redis_proxy/) },
      { typeUrl: TYPE_URLS.Listener, name: 'norouter', message: 'filter_chains[0].filters[0].typed_config.http_filters: must end with envoy.filters.http.router' },
      { typeUrl: TYPE_URLS.RouteConfiguration, name: 'nocluster', message: 'virtual_hosts[0].routes[0].route: no cluster (cluster or weighted_clusters)' },
      { typeUrl: TYPE_URLS.RouteConfiguration, name: 'zero', message: 'virtual_hosts[0].routes[0].route.weighted_clusters: weights sum to 0' },
      { typeUrl: TYPE_URLS.Cluster, name: 'maglev', message: 'lb_policy: MAGLEV is not supported (ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM)' },
      { typeUrl: TYPE_URLS.Cluster, name: 'dns', message: 'type: STRICT_DNS is not supported (STATIC, EDS or ORIGINAL_DST)' },
      { typeUrl: TYPE_URLS.Cluster, name: 'mismatch', message: 'name: "other" does not match the resource name' },
    ]);
    expect(snapshot.version).toBe('v7');
    expect([...snapshot.listeners.keys()]).toEqual(['good']);
    expect([...snapshot.routeConfigs.keys()]).toEqual(['r']);
    expect(snapshot.routeConfigs.get('r')!.virtualHosts[0]!.domains).toEqual(['example.com']);
    expect(snapshot.routeConfigs.get('r')!.virtualHosts[0]!.routes[0]!.action.timeoutMs).toBe(15_000);
    const c = snapshot.clusters.get('c')!;
    // lb_policy unset → ROUND_ROBIN, as in Envoy; endpoints from the CLA named by service_name.
    expect(c).toMatchObject({ lbPolicy: 'round_robin', connectTimeoutMs: 5000, protocol: 'http1', edsServiceName: 'c-eds' });
    expect(c.endpoints.map((e) => [e.port, e.healthy])).toEqual([[80, true], [81, false]]);
  });

  it('reads Envoy-shaped extras: legacy header matchers, http2_protocol_options, 0s timeout, unknown fields', () => {
    const route = encodeMessage(MESSAGE_NAMES.RouteConfiguration, {
      name: 'r', virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{
        match: { path: '/X', case_sensitive: { value: false }, headers: [{ name: 'X-A', prefix_match: 'b', invert_match: true }, { name: 'x-p', present_match: true }] },
        route: { cluster: 'c', timeout: {}, hash_policy: [{ cookie: { name: 's' }, terminal: true }, { connection_properties: { source_ip: true } }] },
      }] }],
    });
    // An unknown field (number 999, length-delimited) must be skipped, not rejected.
    const withUnknown = new Uint8Array([...route, 0xba, 0x3e, 0x01, 0x41]);
    const { snapshot, errors } = buildSnapshot({
      listeners: [], endpoints: [],
      routes: [{ name: 'r', typeUrl: TYPE_URLS.RouteConfiguration, value: withUnknown }],
      clusters: [res('Cluster', 'h2', { name: 'h2', http2_protocol_options: {}, connect_timeout: { nanos: 250_000_000 } })],
    }, 'v');
    expect(errors).toEqual([]);
    const r = snapshot.routeConfigs.get('r')!.virtualHosts[0]!.routes[0]!;
    expect(r.match).toEqual({ kind: 'path', value: '/X', caseSensitive: false, headers: [
      { name: 'x-a', kind: 'prefix', value: 'b', invert: true }, { name: 'x-p', kind: 'present', value: '', invert: false },
    ] });
    expect(r.action.timeoutMs).toBe(0);
    expect(r.action.hashPolicies).toEqual([{ kind: 'cookie', name: 's', terminal: true }, { kind: 'source_ip', terminal: false }]);
    expect(snapshot.clusters.get('h2')).toMatchObject({ protocol: 'http2', connectTimeoutMs: 250, lbPolicy: 'round_robin', endpoints: [] });
  });
});

describe('listener limits from xDS (Envoy field names)', () => {
  const listener = (name: string, hcmExtra: object, listenerExtra: object = {}) =>
    res('Listener', name, { name, address: addr(1), filter_chains: [{ filters: [hcm({ rds: { route_config_name: 'r' }, ...hcmExtra })] }], ...listenerExtra });

  it('reads request_headers_timeout, http2_protocol_options.max_concurrent_streams and listener_filters_timeout', () => {
    const { snapshot, errors } = buildSnapshot({
      listeners: [
        listener('set', { request_headers_timeout: { seconds: 3 }, http2_protocol_options: { max_concurrent_streams: { value: 50 } } }, { listener_filters_timeout: { seconds: 2 } }),
        listener('off', { request_headers_timeout: { seconds: 0 } }, { listener_filters_timeout: { seconds: 0 } }),
        listener('zero', { http2_protocol_options: { max_concurrent_streams: { value: 0 } } }),
        listener('headers', { common_http_protocol_options: { max_headers_count: { value: 0 } } }),
      ],
      routes: [], clusters: [], endpoints: [],
    }, 'v1');
    expect(snapshot.listeners.get('set')).toMatchObject({ firstByteTimeoutMs: 2000, http: { requestHeadersTimeoutMs: 3000, maxConcurrentStreams: 50 } });
    expect(snapshot.listeners.get('off')).toMatchObject({ firstByteTimeoutMs: 0, http: { requestHeadersTimeoutMs: 0, maxConcurrentStreams: 1024, maxHeadersCount: 100 } });
    expect(errors).toEqual([
      { typeUrl: TYPE_URLS.Listener, name: 'zero', message: 'filter_chains[0].filters[0].typed_config.http2_protocol_options.max_concurrent_streams: 0 is not in 1..2147483647' },
      { typeUrl: TYPE_URLS.Listener, name: 'headers', message: 'filter_chains[0].filters[0].typed_config.common_http_protocol_options.max_headers_count: 0 is not in 1..10000' },
    ]);
  });
});
