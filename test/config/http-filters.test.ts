// xDS HTTP filters we run (fault, local_ratelimit) and their per-route configs reach the model; what we do not run
// is refused with the field named (or skipped when the operator marked it optional).
import { describe, expect, it } from 'vitest';
import { buildSnapshot, type RawResource } from '../../src/config/snapshot.js';
import { anyField, encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import { compileForNode } from '../../xds/compiler.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';

const ROUTER = { name: 'envoy.filters.http.router', typed_config: anyField(MESSAGE_NAMES.Router, {}) };
const fault = (f: object) => ({ name: 'envoy.filters.http.fault', typed_config: anyField(MESSAGE_NAMES.HTTPFault, f) });

function listener(httpFilters: object[], routes: object[] = [{ match: { prefix: '/' }, route: { cluster: 'c' } }]): RawResource {
  const hcm = anyField(MESSAGE_NAMES.HttpConnectionManager, {
    stat_prefix: 'l',
    route_config: { name: 'r', virtual_hosts: [{ name: 'v', domains: ['*'], routes }] },
    http_filters: httpFilters,
  });
  return {
    name: 'l',
    typeUrl: TYPE_URLS.Listener,
    value: encodeMessage(MESSAGE_NAMES.Listener, {
      name: 'l',
      address: { socket_address: { address: '127.0.0.1', port_value: 1 } },
      filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }],
    }),
  };
}

function build(l: RawResource) {
  return buildSnapshot({ listeners: [l], routes: [], clusters: [], endpoints: [] }, 'v');
}

describe('HTTP filters from xDS', () => {
  it('reads a fault filter (shares per million) and a route override', () => {
    const { snapshot, errors } = build(
      listener(
        [fault({ abort: { http_status: 503, percentage: { numerator: 25, denominator: 'TEN_THOUSAND' } } }), ROUTER],
        [
          {
            match: { prefix: '/' },
            route: { cluster: 'c' },
            typed_per_filter_config: {
              'envoy.filters.http.fault': anyField(MESSAGE_NAMES.HTTPFault, {
                delay: { fixed_delay: { nanos: 5_000_000 }, percentage: { numerator: 100 } },
                max_active_faults: { value: 3 },
              }),
            },
          },
        ],
      ),
    );
    expect(errors).toEqual([]);
    expect(snapshot.listeners.get('l')!.http!.httpFilters).toEqual([
      {
        name: 'envoy.filters.http.fault',
        kind: 'fault',
        config: { delayMs: 0, delayPerMillion: 0, abortHttpStatus: 503, abortGrpcStatus: undefined, abortPerMillion: 2_500, maxActiveFaults: 0 },
      },
    ]);
    const route = snapshot.routeConfigs.get('r')!.virtualHosts[0]!.routes[0]!;
    expect(route.filterConfigs?.get('envoy.filters.http.fault')).toEqual({
      kind: 'fault',
      config: { delayMs: 5, delayPerMillion: 1_000_000, abortHttpStatus: 0, abortGrpcStatus: undefined, abortPerMillion: 0, maxActiveFaults: 3 },
    });
  });

  it('reads a local rate limit; without a token bucket it only enables per-route buckets', () => {
    const rl = (extra: object) =>
      anyField(MESSAGE_NAMES.LocalRateLimit, { stat_prefix: 'rl', ...extra });
    const { snapshot, errors } = build(
      listener([{ name: 'envoy.filters.http.local_ratelimit', typed_config: rl({}) }, ROUTER], [
        {
          match: { prefix: '/' },
          route: { cluster: 'c' },
          typed_per_filter_config: {
            'envoy.filters.http.local_ratelimit': rl({
              token_bucket: { max_tokens: 10, tokens_per_fill: { value: 2 }, fill_interval: { seconds: 1 } },
              filter_enabled: { default_value: { numerator: 100 } },
              filter_enforced: { default_value: { numerator: 50 } },
              status: { code: 503 },
            }),
          },
        },
      ]),
    );
    expect(errors).toEqual([]);
    expect(snapshot.listeners.get('l')!.http!.httpFilters).toEqual([{ name: 'envoy.filters.http.local_ratelimit', kind: 'local_ratelimit', config: null }]);
    expect(snapshot.routeConfigs.get('r')!.virtualHosts[0]!.routes[0]!.filterConfigs?.get('envoy.filters.http.local_ratelimit')).toEqual({
      kind: 'local_ratelimit',
      config: { statPrefix: 'rl', maxTokens: 10, tokensPerFill: 2, fillIntervalMs: 1000, enabledPerMillion: 1_000_000, enforcedPerMillion: 500_000, status: 503, grpcStatus: 14 },
    });
  });

  it('says which local rate limit fields it does not act on, and honours rate_limited_as_resource_exhausted', () => {
    const rl = anyField(MESSAGE_NAMES.LocalRateLimit, {
      stat_prefix: 'rl',
      token_bucket: { max_tokens: 1, fill_interval: { seconds: 1 } },
      descriptors: [new Uint8Array([10, 0])],
      local_rate_limit_per_downstream_connection: true,
      rate_limited_as_resource_exhausted: true,
    });
    const { snapshot, errors, warnings } = build(listener([{ name: 'envoy.filters.http.local_ratelimit', typed_config: rl }, ROUTER]));
    expect(errors).toEqual([]);
    expect(snapshot.listeners.get('l')!.http!.httpFilters[0]).toMatchObject({ config: { grpcStatus: 8 } });
    expect(warnings.map((w) => w.message)).toEqual([
      expect.stringContaining('http_filters[0].typed_config.descriptors: accepted but not enforced yet'),
      expect.stringContaining('http_filters[0].typed_config.local_rate_limit_per_downstream_connection: accepted but not enforced yet'),
    ]);
  });

  it('refuses what it cannot honour, naming the field; skips an optional filter it does not know', () => {
    const nack = (l: RawResource) => build(l).errors.map((e) => e.message);
    expect(nack(listener([fault({ abort: { header_abort: {}, percentage: { numerator: 1 } } }), ROUTER]))).toEqual([
      expect.stringContaining('http_filters[0].typed_config.abort.header_abort: not supported'),
    ]);
    expect(nack(listener([fault({ abort: { http_status: 700 } }), ROUTER]))).toEqual([expect.stringContaining('abort.http_status: 700 is not in 200..599')]);
    expect(nack(listener([fault({ response_rate_limit: new Uint8Array([10, 2, 8, 1]) }), ROUTER]))).toEqual([
      expect.stringContaining('http_filters[0].typed_config.response_rate_limit: not supported'),
    ]);
    const cors = { name: 'envoy.filters.http.cors', typed_config: { type_url: 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors', value: new Uint8Array() } };
    expect(nack(listener([cors, ROUTER]))).toEqual([expect.stringContaining('http_filters[0]: unsupported filter envoy.filters.http.cors')]);
    expect(nack(listener([{ ...cors, is_optional: true }, ROUTER]))).toEqual([]);
    expect(nack(listener([ROUTER, fault({})]))).toEqual([expect.stringContaining('http_filters[0]: the router must be the last filter')]);
    expect(
      nack(
        listener([ROUTER], [{ match: { prefix: '/' }, route: { cluster: 'c' }, typed_per_filter_config: { 'envoy.filters.http.cors': cors.typed_config } }]),
      ),
    ).toEqual([expect.stringContaining('typed_per_filter_config["envoy.filters.http.cors"]: unsupported config type')]);
  });
});

describe('fault and rateLimit in the mesh config', () => {
  const node = { id: 'a-1', service: 'a', namespace: 'default', serviceAccount: 'a', appPort: 80, inboundPort: 15006, outboundPort: 15001 };

  it('compiles policy.fault to the virtual host, a route fault to its route, and rateLimit to the inbound chain', () => {
    const mesh = parseMeshConfig(`services:
  - name: a
    ports: [{ port: 80, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    policy: { mtls: DISABLE, rateLimit: { requests: 100, per: 1s, burst: 150 }, fault: { delay: { fixed: 50ms, percent: 12.5 } } }
    routes:
      - match: { prefix: /x }
        to: { service: a }
        fault: { abort: { grpcStatus: 14, percent: 100 } }
`);
    const { snapshot, errors } = buildSnapshot(compileForNode(mesh, node), 'v');
    expect(errors).toEqual([]);
    expect(snapshot.listeners.get('outbound')!.http!.httpFilters.map((f) => f.name)).toEqual(['envoy.filters.http.fault']);
    expect(snapshot.listeners.get('inbound')!.http!.httpFilters).toEqual([
      {
        name: 'envoy.filters.http.local_ratelimit',
        kind: 'local_ratelimit',
        config: { statPrefix: 'inbound_rate_limit', maxTokens: 150, tokensPerFill: 100, fillIntervalMs: 1000, enabledPerMillion: 1_000_000, enforcedPerMillion: 1_000_000, status: 429, grpcStatus: 14 },
      },
    ]);
    const vh = snapshot.routeConfigs.get('outbound')!.virtualHosts.find((v) => v.domains.includes('a.default'))!;
    const [x, dflt] = vh.routes;
    expect(x!.filterConfigs?.get('envoy.filters.http.fault')).toMatchObject({ config: { abortGrpcStatus: 14, abortPerMillion: 1_000_000, delayMs: 0 } });
    expect(dflt!.filterConfigs?.get('envoy.filters.http.fault')).toMatchObject({ config: { delayMs: 50, delayPerMillion: 125_000, abortPerMillion: 0 } });
  });

  it('leaves the fault filter out of chains when no route injects faults', () => {
    const mesh = parseMeshConfig(`services:
  - name: a
    ports: [{ port: 80, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
    policy: { mtls: DISABLE }
`);
    const { snapshot } = buildSnapshot(compileForNode(mesh, node), 'v');
    expect(snapshot.listeners.get('outbound')!.http!.httpFilters).toEqual([]);
    expect(snapshot.listeners.get('inbound')!.http!.httpFilters).toEqual([]);
  });

  it('names what is wrong', () => {
    expect(() =>
      parseMeshConfig(`services:
  - name: a
    ports: [{ port: 80 }]
    policy: { fault: { abort: { status: 503, grpcStatus: 14, percent: 150 } }, rateLimit: { requests: 0 } }
`),
    ).toThrow(
      /policy\.fault\.abort: expected exactly one of status \(HTTP, 200-599\), grpcStatus \(0-16\)[\s\S]*policy\.fault\.abort\.percent: expected a percent from 0 to 100, got number 150[\s\S]*policy\.rateLimit\.requests/,
    );
  });
});
