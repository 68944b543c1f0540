// A sidecar and a proxyless gRPC client of the same service each get the Cluster they can use: the sidecar the
// mesh policy as written, the proxyless client the nearest policy every gRPC implementation validates.
import { describe, expect, it } from 'vitest';
import { MESSAGE_NAMES, TYPE_URLS, decodeAny, decodeMessage } from '../../src/config/protos.js';
import { compileForNode, type NodeInfo } from '../../xds/compiler.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { buildNodeSnapshot, type NodeSnapshot } from '../../xds/snapshot-cache.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Plain = any;

const SIDECAR: NodeInfo = { id: 'web-1', service: 'web', namespace: 'default', serviceAccount: 'web', appPort: 8080, inboundPort: 15006, outboundPort: 15001 };
const PROXYLESS: NodeInfo = { id: 'grpc-client', service: '', namespace: 'default', serviceAccount: '', inboundPort: 15006, outboundPort: 15001 };

function mesh(lb: string) {
  return parseMeshConfig(`
services:
  - name: greeter
    ports: [{ port: 50051, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: 19001 }, { address: 127.0.0.1, port: 19002 }]
    policy: { loadBalancer: ${lb}, outlierDetection: { consecutive5xx: 3 } }
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 18080 }]
    policy: { loadBalancer: ${lb} }
`);
}

function resource(snapshot: NodeSnapshot, typeUrl: string, name: string): Uint8Array {
  const r = snapshot.resources.get(typeUrl as never)?.find((x) => x.name === name);
  if (!r) throw new Error(`no ${name}`);
  return r.value;
}

function cluster(snapshot: NodeSnapshot, name: string): Plain {
  return decodeMessage(MESSAGE_NAMES.Cluster, resource(snapshot, TYPE_URLS.Cluster, name));
}

/** The policies of load_balancing_policy, as type names with their decoded configs. */
function policyList(c: Plain): { type: string; config: Plain }[] {
  return (c.load_balancing_policy?.policies ?? []).map((p: Plain) => ({
    type: String(p.typed_extension_config.typed_config.type_url).split('/').pop(),
    config: decodeAny(p.typed_extension_config.typed_config),
  }));
}

const CASES = [
  { lb: '{ policy: least_request, choiceCount: 3 }', sidecar: 'LEAST_REQUEST', proxyless: 'ROUND_ROBIN' },
  { lb: '{ policy: random }', sidecar: 'RANDOM', proxyless: 'ROUND_ROBIN' },
  { lb: '{ policy: round_robin }', sidecar: 'ROUND_ROBIN', proxyless: 'ROUND_ROBIN' },
  { lb: '{ policy: ring_hash, hashOn: { header: x-user }, minRingSize: 64 }', sidecar: 'RING_HASH', proxyless: 'RING_HASH' },
] as const;

describe('Clusters of sidecars and proxyless gRPC clients', () => {
  for (const c of CASES) {
    it(`${c.lb}: the sidecar gets ${c.sidecar}, a proxyless client ${c.proxyless}`, () => {
      const m = mesh(c.lb);
      const sidecar = buildNodeSnapshot(m, SIDECAR);
      const proxyless = buildNodeSnapshot(m, PROXYLESS);
      expect(proxyless.proxyless).toBe(true);
      // The sidecar's Clusters are the compiler's, byte for byte.
      const compiled = compileForNode(m, SIDECAR).clusters;
      expect(sidecar.resources.get(TYPE_URLS.Cluster)!.map((r) => r.value)).toEqual(compiled.map((r) => r.value));

      for (const name of ['greeter.default:50051', 'web.default:8080']) {
        const s = cluster(sidecar, name);
        expect(s.lb_policy ?? 'ROUND_ROBIN').toBe(c.sidecar);
        if (c.sidecar === 'LEAST_REQUEST') expect(s.least_request_lb_config.choice_count.value).toBe(3);

        const p = cluster(proxyless, name);
        // gRFC A27/A42: only ROUND_ROBIN and RING_HASH pass gRPC C-core's lb_policy check.
        expect(p.lb_policy ?? 'ROUND_ROBIN').toBe(c.proxyless);
        expect(p.least_request_lb_config).toBeUndefined();
        // No load_balancing_policy list: grpc-js-xds would read it first (and NACK a RingHash entry), C-core 1.51 not at all.
        expect(p.load_balancing_policy).toBeUndefined();
        if (c.proxyless === 'RING_HASH') {
          expect(p.ring_hash_lb_config.minimum_ring_size.value).toBe(64);
          expect(p.ring_hash_lb_config.hash_function ?? 'XX_HASH').toBe('XX_HASH');
        } else {
          expect(p.ring_hash_lb_config).toBeUndefined();
        }
        // No list on the sidecar's Cluster either: an Envoy sidecar would take it over lb_policy.
        expect(policyList(s)).toHaveLength(0);
        // Everything else is the sidecar's: type, EDS over ADS, timeouts, circuit breakers, outlier detection.
        const rest = (x: Plain) => ({
          ...x, lb_policy: undefined, lb_config: undefined, least_request_lb_config: undefined, ring_hash_lb_config: undefined, load_balancing_policy: undefined,
        });
        expect(rest(p)).toEqual(rest(s));
      }
      // The endpoints are alike for both.
      expect(proxyless.resources.get(TYPE_URLS.ClusterLoadAssignment)!.map((r) => r.value)).toEqual(
        sidecar.resources.get(TYPE_URLS.ClusterLoadAssignment)!.map((r) => r.value),
      );
    });
  }

  it('hashes a proxyless ring_hash route on the header, and sends no cookie or source-IP hash policy gRPC would ignore', () => {
    const route = (lb: string): Plain => {
      const snap = buildNodeSnapshot(mesh(lb), PROXYLESS);
      const rc = decodeMessage<Plain>(MESSAGE_NAMES.RouteConfiguration, resource(snap, TYPE_URLS.RouteConfiguration, 'greeter.default:50051'));
      return rc.virtual_hosts[0].routes[0].route;
    };
    expect(route('{ policy: ring_hash, hashOn: { header: x-user } }').hash_policy).toMatchObject([{ header: { header_name: 'x-user' } }]);
    expect(route('{ policy: ring_hash, hashOn: { sourceIp: true } }').hash_policy ?? []).toEqual([]);
    expect(route('{ policy: ring_hash, hashOn: { cookie: session } }').hash_policy ?? []).toEqual([]);
    expect(route('{ policy: round_robin }').hash_policy ?? []).toEqual([]);
  });
});
