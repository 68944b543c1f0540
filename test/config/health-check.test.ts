// Active health checks through the config path: mesh config → compiler → Cluster.health_checks (at Envoy's field
// numbers, read back with Envoy's own protos) → translator → HealthCheckModel; and the NACKs of bad health_checks.
import { describe, expect, it } from 'vitest';
import { buildSnapshot, type RawResource } from '../../src/config/snapshot.js';
import { encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import { compileForNode, type NodeInfo } from '../../xds/compiler.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { envoyRoot } from './envoy-protos.js';

const NODE: NodeInfo = { id: 'f', service: 'client', namespace: 'default', serviceAccount: 'client', inboundPort: 15006, outboundPort: 15001 };

const MESH = `
services:
  - name: client
    ports: [{ port: 8080 }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: web
    ports: [{ port: 8080 }]
    endpoints: [{ address: 127.0.0.1, port: 2 }]
    policy: { healthCheck: { path: /healthz, interval: 2s, timeout: 250ms, unhealthyThreshold: 4 } }
  - name: db
    ports: [{ port: 5432, protocol: tcp }]
    endpoints: [{ address: 127.0.0.1, port: 3 }]
    policy: { healthCheck: {} }
`;

const cluster = (extra: object, name = 'c'): RawResource => ({
  name, typeUrl: TYPE_URLS.Cluster, value: encodeMessage(MESSAGE_NAMES.Cluster, { name, ...extra }),
});
const hc = (extra: object) => ({ timeout: { seconds: 1 }, interval: { seconds: 5 }, unhealthy_threshold: { value: 2 }, healthy_threshold: { value: 1 }, ...extra });

function build(clusters: RawResource[]) {
  return buildSnapshot({ listeners: [], routes: [], clusters, endpoints: [] }, 'v');
}


describe('health checks in the config path', () => {
  const resources = compileForNode(parseMeshConfig(MESH), NODE);

  it('compiles policy.healthCheck into health_checks that Envoy reads at its field numbers', () => {
    const C = envoyRoot(['envoy/config/cluster/v3/cluster.proto']).lookupType('envoy.config.cluster.v3.Cluster');
    const web = C.toObject(C.decode(resources.clusters.find((c) => c.name === 'web.default:8080')!.value), { longs: Number });
    expect(web.health_checks).toEqual([
      {
        timeout: { seconds: 0, nanos: 250_000_000 }, interval: { seconds: 2, nanos: 0 }, no_traffic_interval: { seconds: 2, nanos: 0 }, interval_jitter_percent: 10,
        unhealthy_threshold: { value: 4 }, healthy_threshold: { value: 2 }, http_health_check: { path: '/healthz' },
      },
    ]);
    const db = C.toObject(C.decode(resources.clusters.find((c) => c.name === 'db.default:5432')!.value), { longs: Number });
    expect(db.health_checks[0]).toMatchObject({ timeout: { seconds: 1 }, interval: { seconds: 10 }, tcp_health_check: {} });
    const client = C.toObject(C.decode(resources.clusters.find((c) => c.name === 'client.default:8080')!.value));
    expect(client.health_checks).toBeUndefined();
  });

  it('translates them into the model, the Host header defaulting to the cluster name as in Envoy', () => {
    const { snapshot, errors } = buildSnapshot(resources, 'v');
    expect(errors).toEqual([]);
    expect(snapshot.clusters.get('web.default:8080')!.healthCheck).toEqual({
      timeoutMs: 250, intervalMs: 2000, noTrafficIntervalMs: 2000, intervalJitterMs: 0, intervalJitterPercent: 10, initialJitterMs: 0,
      unhealthyThreshold: 4, healthyThreshold: 2,
      http: { path: '/healthz', host: 'web.default:8080', expectedStatuses: [{ start: 200, end: 201 }], retriableStatuses: [] },
    });
    expect(snapshot.clusters.get('db.default:5432')!.healthCheck).toMatchObject({ intervalMs: 10_000, unhealthyThreshold: 3, healthyThreshold: 2 });
    expect(snapshot.clusters.get('db.default:5432')!.healthCheck!.http).toBeUndefined();
    expect(snapshot.clusters.get('client.default:8080')!.healthCheck).toBeUndefined();
  });

  it("takes Envoy's defaults: no_traffic_interval 60 s, expected statuses 200 only; and a configured host and ranges", () => {
    const { snapshot, errors } = build([
      cluster({ health_checks: [hc({ http_health_check: { path: '/h', host: 'svc.local', expected_statuses: [{ start: 200, end: 300 }], retriable_statuses: [{ start: 503, end: 504 }] } })] }),
    ]);
    expect(errors).toEqual([]);
    expect(snapshot.clusters.get('c')!.healthCheck).toMatchObject({
      noTrafficIntervalMs: 60_000,
      http: { host: 'svc.local', expectedStatuses: [{ start: 200, end: 300 }], retriableStatuses: [{ start: 503, end: 504 }] },
    });
  });

  it('NACKs a bad health check naming the field', () => {
    const cases: [object, string][] = [
      [{ health_checks: [hc({ tcp_health_check: {} }), hc({ tcp_health_check: {} })] }, 'health_checks: 2 entries; one health check per cluster is supported (as in Envoy)'],
      [{ health_checks: [hc({ timeout: undefined, tcp_health_check: {} })] }, 'health_checks[0].timeout: missing (Envoy requires it)'],
      [{ health_checks: [hc({ interval: { seconds: 0 }, tcp_health_check: {} })] }, 'health_checks[0].interval: must be above 0'],
      [{ health_checks: [hc({ timeout: { seconds: -1 }, tcp_health_check: {} })] }, 'health_checks[0].timeout: negative duration (seconds -1, nanos 0)'],
      [{ health_checks: [hc({ healthy_threshold: { value: 0 }, tcp_health_check: {} })] }, 'health_checks[0].healthy_threshold: must be at least 1'],
      [{ health_checks: [hc({ unhealthy_threshold: undefined, tcp_health_check: {} })] }, 'health_checks[0].unhealthy_threshold: missing (Envoy requires it)'],
      [{ health_checks: [hc({ http_health_check: { path: 'healthz' } })] }, 'health_checks[0].http_health_check.path: expected a path starting with "/", got "healthz"'],
      [{ health_checks: [hc({ http_health_check: {} })] }, 'health_checks[0].http_health_check.path: missing'],
      [{ health_checks: [hc({ http_health_check: { path: '/a b' } })] }, 'health_checks[0].http_health_check.path: control characters or spaces are not allowed'],
      [{ health_checks: [hc({ http_health_check: { path: '/', host: 'a\r\nX-Evil: 1' } })] }, 'health_checks[0].http_health_check.host: control characters are not allowed'],
      [{ health_checks: [hc({ http_health_check: { path: '/', expected_statuses: [{ start: 300, end: 200 }] } })] }, 'health_checks[0].http_health_check.expected_statuses[0]: expected 100 <= start < end <= 600, got [300, 200)'],
      [{ health_checks: [hc({ http_health_check: { path: '/', receive: [{ text: '4f4b' }] } })] }, 'health_checks[0].http_health_check.receive: response payload matching is not supported (statuses only)'],
      [{ health_checks: [hc({ tcp_health_check: { send: { text: '00' } } })] }, 'health_checks[0].tcp_health_check: send/receive payloads are not supported (connect only)'],
      [{ health_checks: [hc({ grpc_health_check: {} })] }, 'health_checks[0].grpc_health_check: not supported (http_health_check or tcp_health_check)'],
      [{ health_checks: [hc({})] }, 'health_checks[0]: one of http_health_check, tcp_health_check is required'],
    ];
    const { snapshot, errors } = build(cases.map(([extra], i) => cluster(extra, `c${i}`)));
    expect(snapshot.clusters.size).toBe(0);
    expect(errors.map((e) => [e.name, e.message])).toEqual(cases.map(([, message], i) => [`c${i}`, message]));
  });

  it('warns about interval variants it does not follow', () => {
    const { errors, warnings } = build([cluster({ health_checks: [hc({ tcp_health_check: {}, unhealthy_interval: { seconds: 1 } })] })]);
    expect(errors).toEqual([]);
    expect(warnings.map((w) => w.message)).toEqual(['health_checks[0].unhealthy_interval: accepted but not enforced yet (every probe waits interval)']);
  });
});
