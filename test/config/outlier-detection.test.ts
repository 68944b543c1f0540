// Outlier detection through the config path: mesh config validation, the compiled outlier_detection read back
// with Envoy's own protos, translation into the model with Envoy's defaults, NACK texts, and what a proxyless
// grpc-js-xds client makes of the same Cluster.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { buildSnapshot, type RawResource } from '../../src/config/snapshot.js';
import { encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import { DEFAULTS } from '../../src/config/model.js';
import { compileForNode, type NodeInfo } from '../../xds/compiler.js';
import { MeshConfigError, parseMeshConfig } from '../../xds/mesh-config.js';
import { buildNodeSnapshot } from '../../xds/snapshot-cache.js';
import { envoyRoot } from './envoy-protos.js';

const NODE: NodeInfo = { id: 'f', service: 'client', namespace: 'default', serviceAccount: 'client', inboundPort: 15006, outboundPort: 15001 };
const PROXYLESS: NodeInfo = { id: 'g', service: '', namespace: 'default', serviceAccount: '', inboundPort: 15006, outboundPort: 15001 };

const MESH = `
services:
  - name: client
    ports: [{ port: 8080 }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: web
    ports: [{ port: 8080 }]
    endpoints: [{ address: 127.0.0.1, port: 2 }]
    policy:
      outlierDetection:
        consecutive5xx: 4
        consecutiveLocalOriginFailure: 2
        splitExternalLocalOriginErrors: true
        maxEjectionTime: 60s
        successRate: { minimumHosts: 3, stdevFactor: 1.5 }
        failurePercentage: { threshold: 70 }
  - name: plain
    ports: [{ port: 8080 }]
    endpoints: [{ address: 127.0.0.1, port: 3 }]
    policy: { outlierDetection: { consecutive5xx: 3 } }
`;

const cluster = (od: object, name = 'c'): RawResource => ({
  name, typeUrl: TYPE_URLS.Cluster, value: encodeMessage(MESSAGE_NAMES.Cluster, { name, outlier_detection: od }),
});

function build(clusters: RawResource[]) {
  return buildSnapshot({ listeners: [], routes: [], clusters, endpoints: [] }, 'v');
}


function problems(yaml: string): string[] {
  try {
    parseMeshConfig(yaml, 'm.yaml');
  } catch (e) {
    expect(e).toBeInstanceOf(MeshConfigError);
    return (e as Error).message.split('\n');
  }
  throw new Error('expected a MeshConfigError');
}

const withOd = (od: string) => `
services:
  - name: a
    ports: [{ port: 80 }]
    policy:
      outlierDetection: ${od}
`;

describe('outlier detection in the config path', () => {
  const resources = compileForNode(parseMeshConfig(MESH), NODE);

  it('compiles the new fields at Envoy field numbers; each interval detector is enforced only when named', () => {
    const C = envoyRoot(['envoy/config/cluster/v3/cluster.proto']).lookupType('envoy.config.cluster.v3.Cluster');
    const read = (name: string) => C.toObject(C.decode(resources.clusters.find((c) => c.name === name)!.value), { longs: Number }).outlier_detection;
    expect(read('web.default:8080')).toEqual({
      consecutive_5xx: { value: 4 },
      consecutive_gateway_failure: { value: 5 },
      enforcing_consecutive_gateway_failure: { value: 100 },
      interval: { seconds: 10, nanos: 0 },
      base_ejection_time: { seconds: 30, nanos: 0 },
      max_ejection_percent: { value: 10 },
      max_ejection_time: { seconds: 60, nanos: 0 },
      split_external_local_origin_errors: true,
      consecutive_local_origin_failure: { value: 2 },
      enforcing_success_rate: { value: 100 },
      success_rate_minimum_hosts: { value: 3 },
      success_rate_request_volume: { value: 100 },
      success_rate_stdev_factor: { value: 1500 },
      enforcing_failure_percentage: { value: 100 },
      failure_percentage_threshold: { value: 70 },
      failure_percentage_minimum_hosts: { value: 5 },
      failure_percentage_request_volume: { value: 50 },
    });
    const plain = read('plain.default:8080');
    expect(plain).toMatchObject({ enforcing_success_rate: { value: 0 }, max_ejection_time: { seconds: 300 } });
    expect(plain.enforcing_failure_percentage).toBeUndefined();
    expect(plain.split_external_local_origin_errors).toBeUndefined();
  });

  it('translates the compiled Cluster into the model', () => {
    const { snapshot, errors } = buildSnapshot(resources, 'v');
    expect(errors).toEqual([]);
    expect(snapshot.clusters.get('web.default:8080')!.outlierDetection).toEqual({
      ...DEFAULTS.outlierDetection,
      consecutive5xx: 4,
      enforcingConsecutiveGatewayFailure: 100,
      maxEjectionTimeMs: 60_000,
      splitExternalLocalOriginErrors: true,
      consecutiveLocalOriginFailure: 2,
      successRate: { minimumHosts: 3, requestVolume: 100, stdevFactor: 1500, enforcing: 100 },
      failurePercentage: { threshold: 70, minimumHosts: 5, requestVolume: 50, enforcing: 100 },
    });
    expect(snapshot.clusters.get('plain.default:8080')!.outlierDetection).toMatchObject({
      successRate: { enforcing: 0 },
      failurePercentage: { enforcing: 0 },
      enforcingConsecutiveGatewayFailure: 100,
    });
  });

  it("takes Envoy's defaults from raw xDS: gateway failures and failure percentage not enforced, success rate at 100 %", () => {
    const { snapshot, errors } = build([cluster({}), cluster({ base_ejection_time: { seconds: 400 } }, 'big')]);
    expect(errors).toEqual([]);
    expect(snapshot.clusters.get('c')!.outlierDetection).toEqual({
      consecutive5xx: 5,
      consecutiveGatewayFailure: 5,
      intervalMs: 10_000,
      baseEjectionTimeMs: 30_000,
      maxEjectionPercent: 10,
      maxEjectionTimeMs: 300_000,
      maxEjectionTimeJitterMs: 0,
      enforcingConsecutive5xx: 100,
      enforcingConsecutiveGatewayFailure: 0,
      splitExternalLocalOriginErrors: false,
      consecutiveLocalOriginFailure: 5,
      enforcingConsecutiveLocalOriginFailure: 100,
      successRate: { minimumHosts: 5, requestVolume: 100, stdevFactor: 1900, enforcing: 100 },
      failurePercentage: { threshold: 85, minimumHosts: 5, requestVolume: 50, enforcing: 0 },
    });
    // Unset, max_ejection_time is 300 s or base_ejection_time, whichever is larger.
    expect(snapshot.clusters.get('big')!.outlierDetection!.maxEjectionTimeMs).toBe(400_000);
  });

  it('NACKs out-of-range outlier detection fields, naming them', () => {
    const cases: [object, string][] = [
      [{ enforcing_consecutive_5xx: { value: 101 } }, 'outlier_detection.enforcing_consecutive_5xx: 101 is above 100'],
      [{ enforcing_consecutive_gateway_failure: { value: 200 } }, 'outlier_detection.enforcing_consecutive_gateway_failure: 200 is above 100'],
      [{ enforcing_consecutive_local_origin_failure: { value: 101 } }, 'outlier_detection.enforcing_consecutive_local_origin_failure: 101 is above 100'],
      [{ enforcing_success_rate: { value: 101 } }, 'outlier_detection.enforcing_success_rate: 101 is above 100'],
      [{ failure_percentage_threshold: { value: 101 } }, 'outlier_detection.failure_percentage_threshold: 101 is above 100'],
      [{ enforcing_failure_percentage: { value: 150 } }, 'outlier_detection.enforcing_failure_percentage: 150 is above 100'],
      [{ max_ejection_time: { seconds: 0 } }, 'outlier_detection.max_ejection_time: must be above 0'],
      [{ max_ejection_time: { seconds: 10 } }, 'outlier_detection.max_ejection_time: 10000 ms is below base_ejection_time (30000 ms)'],
      [{ max_ejection_time_jitter: { seconds: -1 } }, 'outlier_detection.max_ejection_time_jitter: negative duration (seconds -1, nanos 0)'],
    ];
    const { snapshot, errors } = build(cases.map(([od], i) => cluster(od, `c${i}`)));
    expect(snapshot.clusters.size).toBe(0);
    expect(errors.map((e) => [e.name, e.message])).toEqual(cases.map(([, message], i) => [`c${i}`, message]));
  });

  it('validates the mesh config fields with their paths', () => {
    const at = 'm.yaml: services[0].policy.outlierDetection';
    expect(problems(withOd('{ consecutiveLocalOriginFailure: 0, splitExternalLocalOriginErrors: yes }'))).toEqual([
      `${at}.consecutiveLocalOriginFailure: expected an integer from 1 to 1000000, got number 0 (line 6)`,
      `${at}.splitExternalLocalOriginErrors: expected true or false, got string "yes" (line 6)`,
    ]);
    expect(problems(withOd('{ baseEjectionTime: 1m, maxEjectionTime: 30s }'))).toEqual([
      `${at}.maxEjectionTime: expected at least baseEjectionTime (60000ms), got 30000ms (line 6)`,
    ]);
    expect(problems(withOd('{ successRate: { minimumHosts: 0, stdevFactor: 1.2345, volume: 3 } }'))).toEqual([
      `${at}.successRate.volume: unknown field (expected one of: minimumHosts, requestVolume, stdevFactor) (line 6)`,
      `${at}.successRate.minimumHosts: expected an integer from 1 to 1000000, got number 0 (line 6)`,
      `${at}.successRate.stdevFactor: expected a number from 0 to 1000 with at most 3 decimals (like 1.9), got number 1.2345 (line 6)`,
    ]);
    expect(problems(withOd('{ failurePercentage: { threshold: 101, requestVolume: 0 } }'))).toEqual([
      `${at}.failurePercentage.threshold: expected an integer from 0 to 100, got number 101 (line 6)`,
      `${at}.failurePercentage.requestVolume: expected an integer from 1 to 1000000, got number 0 (line 6)`,
    ]);
    expect(() => parseMeshConfig(withOd('{ maxEjectionTime: 30s, successRate: {}, failurePercentage: {} }'))).not.toThrow();
  });

  it('gives proxyless grpc-js-xds clients interval detectors they accept, with every field set', async () => {
    const require = createRequire(import.meta.url);
    const { ClusterResourceType } = require('@grpc/grpc-js-xds/build/src/xds-resource-type/cluster-resource-type.js') as {
      ClusterResourceType: new () => { decode(ctx: object, r: { type_url: string; value: Uint8Array }): { value?: { outlierDetectionUpdate?: unknown }; error?: string } };
    };
    const snap = buildNodeSnapshot(parseMeshConfig(MESH), PROXYLESS);
    const decoded = (name: string) => {
      const r = snap.resources.get(TYPE_URLS.Cluster as never)!.find((x) => x.name === name)!;
      const out = new ClusterResourceType().decode({}, { type_url: TYPE_URLS.Cluster, value: Buffer.from(r.value) });
      expect(out.error).toBeUndefined();
      return out.value!.outlierDetectionUpdate;
    };
    expect(decoded('web.default:8080')).toMatchObject({
      max_ejection_time: { seconds: 60, nanos: 0 },
      max_ejection_percent: 10,
      success_rate_ejection: { enforcement_percentage: 100, minimum_hosts: 3, request_volume: 100, stdev_factor: 1500 },
      failure_percentage_ejection: { enforcement_percentage: 100, minimum_hosts: 5, request_volume: 50, threshold: 70 },
    });
    // Consecutive counters alone: gRPC has no such detector, and the success-rate one stays off as asked.
    expect(decoded('plain.default:8080')).toMatchObject({ success_rate_ejection: undefined, failure_percentage_ejection: undefined });
  });
});
