// Priorities, locality weights and the overprovisioning factor along the config path: mesh config → compiler →
// xDS bytes (checked against Envoy's own .proto files) → translator → the model the balancer reads.
import { describe, expect, it } from 'vitest';
import { buildSnapshot, type RawResource } from '../../src/config/snapshot.js';
import { encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import { compileForNode } from '../../xds/compiler.js';
import { MeshConfigError, parseMeshConfig } from '../../xds/mesh-config.js';
import { envoyRoot, fieldNumbers } from './envoy-protos.js';

const res = (kind: keyof typeof MESSAGE_NAMES & keyof typeof TYPE_URLS, name: string, plain: object): RawResource => ({
  name, typeUrl: TYPE_URLS[kind], value: encodeMessage(MESSAGE_NAMES[kind], plain),
});
const lbe = (port: number, health?: string) => ({ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } }, ...(health ? { health_status: health } : {}) });
const edsCluster = (extra: object = {}) => res('Cluster', 'c', { name: 'c', type: 'EDS', eds_cluster_config: { service_name: 'c' }, ...extra });
const empty = { listeners: [], routes: [] };

/** Envoy's own .proto files, as @grpc/grpc-js-xds ships them. */

describe('EDS priorities, locality weights and the overprovisioning factor', () => {
  it("puts the fields at Envoy's numbers (policy 4 / overprovisioning_factor 3, priority 5, locality weight 3, common_lb_config 27)", () => {
    const cla = encodeMessage(MESSAGE_NAMES.ClusterLoadAssignment, {
      cluster_name: 'c', endpoints: [{ priority: 1, load_balancing_weight: { value: 3 } }], policy: { overprovisioning_factor: { value: 120 } },
    });
    expect(fieldNumbers(cla)).toEqual([1, 2, 4]);
    const root = envoyRoot(['google/protobuf/descriptor.proto', 'envoy/config/cluster/v3/cluster.proto', 'envoy/config/endpoint/v3/endpoint.proto']);
    const E = root.lookupType('envoy.config.endpoint.v3.ClusterLoadAssignment');
    expect(E.toObject(E.decode(cla))).toMatchObject({
      endpoints: [{ priority: 1, load_balancing_weight: { value: 3 } }], policy: { overprovisioning_factor: { value: 120 } },
    });
    const cluster = encodeMessage(MESSAGE_NAMES.Cluster, { name: 'c', common_lb_config: { healthy_panic_threshold: { value: 30 }, locality_weighted_lb_config: {} } });
    expect(fieldNumbers(cluster)).toEqual([1, 27]);
    const C = root.lookupType('envoy.config.cluster.v3.Cluster');
    expect(C.toObject(C.decode(cluster))).toMatchObject({ common_lb_config: { healthy_panic_threshold: { value: 30 }, locality_weighted_lb_config: {} } });
  });

  it('carries priority, locality weight and overprovisioning factor into the model (EDS and STATIC)', () => {
    const { snapshot, errors } = buildSnapshot({
      ...empty,
      clusters: [
        edsCluster({ common_lb_config: { healthy_panic_threshold: { value: 30.9 }, locality_weighted_lb_config: {} } }),
        res('Cluster', 's', {
          name: 's', type: 'STATIC',
          load_assignment: { cluster_name: 's', endpoints: [{ priority: 2, lb_endpoints: [lbe(90)] }], policy: { overprovisioning_factor: { value: 100 } } },
        }),
      ],
      endpoints: [
        res('ClusterLoadAssignment', 'c', {
          cluster_name: 'c',
          endpoints: [
            { locality: { zone: 'a' }, load_balancing_weight: { value: 3 }, lb_endpoints: [lbe(80)] },
            { locality: { zone: 'b' }, priority: 1, lb_endpoints: [lbe(81, 'UNHEALTHY')] },
          ],
          policy: { overprovisioning_factor: { value: 120 } },
        }),
      ],
    }, '1');
    expect(errors).toEqual([]);
    const c = snapshot.clusters.get('c')!;
    expect(c).toMatchObject({ overprovisioningFactor: 120, healthyPanicThreshold: 30, localityWeighted: true });
    expect(c.endpoints).toMatchObject([
      { port: 80, zone: 'a', priority: 0, localityWeight: 3, healthy: true },
      { port: 81, zone: 'b', priority: 1, localityWeight: 0, healthy: false },
    ]);
    const s = snapshot.clusters.get('s')!;
    expect(s).toMatchObject({ overprovisioningFactor: 100 });
    expect(s.localityWeighted).toBeUndefined();
    expect(s.endpoints[0]).toMatchObject({ priority: 2 });
  });

  it("rejects what Envoy's proto rules reject, naming the field", () => {
    const bad = (cla: object) =>
      buildSnapshot({ ...empty, clusters: [edsCluster()], endpoints: [res('ClusterLoadAssignment', 'c', { cluster_name: 'c', ...cla })] }, '1').errors.map((e) => e.message);
    expect(bad({ endpoints: [{ priority: 129, lb_endpoints: [lbe(80)] }] })).toEqual(['endpoints[0].priority: 129 is above 128']);
    expect(bad({ endpoints: [{ load_balancing_weight: { value: 0 }, lb_endpoints: [lbe(80)] }] })).toEqual(['endpoints[0].load_balancing_weight: must be at least 1']);
    expect(bad({ endpoints: [{ lb_endpoints: [lbe(80)] }], policy: { overprovisioning_factor: { value: 0 } } })).toEqual(['policy.overprovisioning_factor: must be above 0']);
    const threshold = buildSnapshot({ ...empty, clusters: [edsCluster({ common_lb_config: { healthy_panic_threshold: { value: 101 } } })], endpoints: [] }, '1');
    expect(threshold.errors.map((e) => e.message)).toEqual(['common_lb_config.healthy_panic_threshold.value: 101 is not within 0..100']);
  });
});

describe('mesh config endpoints with priority and locality weight', () => {
  const mesh = (endpoints: string) => `
services:
  - name: web
    ports: [{ port: 8080 }]
    endpoints:
${endpoints}
`;

  it('compiles priorities into separate localities and weights into locality-weighted balancing', () => {
    const config = parseMeshConfig(mesh(`
      - { address: 10.0.0.1, port: 80, locality: { zone: a, weight: 3 } }
      - { address: 10.0.0.2, port: 80, locality: { zone: a, weight: 3 } }
      - { address: 10.0.0.3, port: 80, locality: { zone: b, weight: 1 } }
      - { address: 10.0.1.1, port: 80, priority: 1, locality: { zone: a, weight: 1 } }`));
    const out = compileForNode(config, { id: 'n', service: 'web', namespace: 'default', serviceAccount: 'web', inboundPort: 15006, outboundPort: 15001 });
    const { snapshot, errors } = buildSnapshot({ ...empty, clusters: out.clusters, endpoints: out.endpoints }, '1');
    expect(errors).toEqual([]);
    const web = snapshot.clusters.get('web.default:8080')!;
    expect(web.localityWeighted).toBe(true);
    expect(web.endpoints.map((e) => [e.address, e.zone, e.priority, e.localityWeight])).toEqual([
      ['10.0.0.1', 'a', 0, 3], ['10.0.0.2', 'a', 0, 3], ['10.0.0.3', 'b', 0, 1], ['10.0.1.1', 'a', 1, 1],
    ]);
  });

  it('keeps the old shape without weights or priorities (locality weight = sum of endpoint weights, no switch)', () => {
    const config = parseMeshConfig(mesh(`
      - { address: 10.0.0.1, port: 80, weight: 2, locality: { zone: a } }
      - { address: 10.0.0.2, port: 80, locality: { zone: b } }`));
    const out = compileForNode(config, { id: 'n', service: 'web', namespace: 'default', serviceAccount: 'web', inboundPort: 15006, outboundPort: 15001 });
    const web = buildSnapshot({ ...empty, clusters: out.clusters, endpoints: out.endpoints }, '1').snapshot.clusters.get('web.default:8080')!;
    expect(web.localityWeighted).toBeUndefined();
    expect(web.endpoints.map((e) => [e.priority, e.localityWeight])).toEqual([[0, 2], [0, 1]]);
  });

  it('names the path of each problem', () => {
    const invalid = parseMeshConfig.bind(null, mesh(`
      - { address: 10.0.0.1, port: 80 }
      - { address: 10.0.0.4, port: 80, priority: 129, locality: { weight: 0 } }`), 'm.yaml');
    expect(invalid).toThrowError(MeshConfigError);
    expect(invalid).toThrowError(/m\.yaml: services\[0\]\.endpoints\[1\]\.priority: expected an integer from 0 to 128, got number 129/);
    expect(invalid).toThrowError(/m\.yaml: services\[0\]\.endpoints\[1\]\.locality\.weight: expected an integer from 1 to 4294967295, got number 0/);
    const valid = parseMeshConfig.bind(null, mesh(`
      - { address: 10.0.0.1, port: 80, priority: 2, locality: { zone: a, weight: 3 } }
      - { address: 10.0.0.2, port: 80, priority: 2, locality: { zone: a, weight: 4 } }
      - { address: 10.0.0.3, port: 80, locality: { zone: b } }`), 'm.yaml');
    expect(valid).toThrowError(/services\[0\]\.endpoints\[1\]\.locality\.weight: 4 differs from 3, the weight an earlier endpoint gave the same locality and priority/);
    expect(valid).toThrowError(/services\[0\]\.endpoints\[2\]\.locality\.weight: missing: once one locality has a weight, every locality needs one/);
    expect(valid).toThrowError(/services\[0\]\.endpoints: priorities must run from 0 without gaps: no endpoint has priority 1 \(used: 0, 2\)/);
  });
});
