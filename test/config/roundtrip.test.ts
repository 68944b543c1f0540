import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RETRY_ON } from '../../src/http/router/retry-policy.js';
import { loadLocalSnapshot } from '../../src/config/local.js';
import { buildSnapshot } from '../../src/config/snapshot.js';
import { compileForNode, nodeInfoFromXdsNode, nodeToXds, type NodeInfo } from '../../xds/compiler.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { decodeMessage, encodeMessage, MESSAGE_NAMES } from '../../src/config/protos.js';
import { MESH_YAML } from './mesh-fixture.js';

const FRONTEND: NodeInfo = {
  id: 'frontend-1', service: 'frontend', namespace: 'default', serviceAccount: 'frontend',
  appPort: 8080, inboundPort: 15006, outboundPort: 15001,
};

function compile(node: NodeInfo = FRONTEND) {
  const resources = compileForNode(parseMeshConfig(MESH_YAML), node);
  const { snapshot, errors } = buildSnapshot(resources, 'v1');
  expect(errors).toEqual([]);
  return { resources, snapshot };
}

describe('compile → encode → decode → translate', () => {
  it('names resources as DESIGN.md §4 says', () => {
    const { resources } = compile();
    expect(resources.listeners.map((r) => r.name)).toEqual(['outbound', 'outbound:19080', 'outbound:15432', 'inbound']);
    expect(resources.routes.map((r) => r.name)).toEqual(['outbound']);
    expect(resources.clusters.map((r) => r.name)).toEqual([
      'frontend.default:8080', 'backend.default:8080', 'backend.default:9090', 'backend-v2.default:8080',
      'sessions.default:7000', 'db.default:5432', 'inbound:8080',
    ]);
    expect(resources.endpoints.map((r) => r.name)).toEqual(resources.clusters.map((r) => r.name).filter((n) => !n.startsWith('inbound')));
    expect(resources.warnings).toEqual([]);
  });

  it('builds the outbound listener with RDS and the route table with domains, split, timeouts, retries', () => {
    const { snapshot } = compile();
    expect(snapshot.listeners.get('outbound')).toEqual({
      name: 'outbound', address: '127.0.0.1', port: 15001, direction: 'outbound', firstByteTimeoutMs: 15_000, useOriginalDst: false, bindToPort: true,
      http: {
        statPrefix: 'outbound', routeConfigName: 'outbound', codec: 'auto', requestTimeoutMs: 0,
        streamIdleTimeoutMs: 300_000, idleTimeoutMs: 3_600_000, maxRequestHeadersKb: 60, generateRequestId: true, httpFilters: [],
        requestHeadersTimeoutMs: 10_000, maxConcurrentStreams: 1024, maxHeadersCount: 100,
      },
    });
    const rc = snapshot.routeConfigs.get('outbound')!;
    const backend = rc.virtualHosts.find((v) => v.name === 'backend.default:8080')!;
    expect(backend.domains).toEqual([
      'backend', 'backend.default', 'backend.default.svc', 'backend.default.svc.cluster.local',
      'backend:8080', 'backend.default:8080', 'backend.default.svc:8080', 'backend.default.svc.cluster.local:8080',
    ]);
    // A second HTTP port only answers with its port, so bare names stay unambiguous.
    expect(rc.virtualHosts.find((v) => v.name === 'backend.default:9090')!.domains).toEqual([
      'backend:9090', 'backend.default:9090', 'backend.default.svc:9090', 'backend.default.svc.cluster.local:9090',
    ]);
    expect(rc.virtualHosts.some((v) => v.name.startsWith('db.'))).toBe(false);
    const [api, health, dflt] = backend.routes;
    expect(api!.match).toEqual({
      kind: 'prefix', value: '/api', caseSensitive: true,
      headers: [{ name: 'x-canary', kind: 'exact', value: '1', invert: false }],
    });
    expect(api!.action.clusters).toEqual([{ name: 'backend-v2.default:8080', weight: 10 }, { name: 'backend.default:8080', weight: 90 }]);
    expect(api!.action.totalWeight).toBe(100);
    expect(api!.action.timeoutMs).toBe(2000);
    expect(health!.match.kind).toBe('path');
    expect(health!.action.clusters).toEqual([{ name: 'backend-v2.default:8080', weight: 1 }]);
    expect(dflt!.match).toMatchObject({ kind: 'prefix', value: '/' });
    expect(dflt!.action).toMatchObject({ clusters: [{ name: 'backend.default:8080', weight: 1 }], timeoutMs: 5000, hashPolicies: [] });
    expect(dflt!.action.retry).toEqual({
      numRetries: 2, perTryTimeoutMs: 1000, retryOn: ['5xx', 'reset', 'connect-failure', 'retriable-status-codes'],
      retriableStatusCodes: [503], backoffBaseMs: 25, backoffMaxMs: 250,
      conditions: RETRY_ON['5xx'] | RETRY_ON.reset | RETRY_ON['connect-failure'] | RETRY_ON['retriable-status-codes'],
      bufferLimitBytes: 65_536,
    });
    // No policy.timeout → Envoy's 15 s default.
    const v2 = rc.virtualHosts.find((v) => v.name === 'backend-v2.default:8080')!;
    expect(v2.routes[0]!.action.timeoutMs).toBe(15_000);
    expect(v2.routes[0]!.action.retry).toBeUndefined();
    // gRPC ports get no default timeout: a long-lived stream must not be cut at 15 s.
    const sessions = rc.virtualHosts.find((v) => v.name === 'sessions.default:7000')!;
    expect(sessions.routes[0]!.action.timeoutMs).toBe(0);
  });

  it('translates ring hash, least request, circuit breakers, outlier detection, http2 and EDS endpoints', () => {
    const { snapshot } = compile();
    const backend = snapshot.clusters.get('backend.default:8080')!;
    expect(backend).toMatchObject({
      connectTimeoutMs: 1000, lbPolicy: 'least_request', choiceCount: 3, protocol: 'http1',
      circuitBreakers: { maxConnections: 100, maxPendingRequests: 1024, maxRequests: 1024, maxRetries: 5 },
      outlierDetection: { consecutive5xx: 7, consecutiveGatewayFailure: 5, intervalMs: 10_000, baseEjectionTimeMs: 30_000, maxEjectionPercent: 10 },
      edsServiceName: 'backend.default:8080',
    });
    expect(backend.endpoints).toEqual([
      // Locality weights: the compiler's sum of endpoint weights (no locality-weighted balancing asked for).
      { address: '127.0.0.1', port: 18081, weight: 2, region: 'r1', zone: 'a', healthy: true, priority: 0, localityWeight: 2 },
      { address: '127.0.0.2', port: 18081, weight: 1, region: 'r1', zone: 'b', healthy: true, priority: 0, localityWeight: 1 },
    ]);
    const sessions = snapshot.clusters.get('sessions.default:7000')!;
    expect(sessions).toMatchObject({ lbPolicy: 'ring_hash', ringHash: { minRingSize: 2048, maxRingSize: 8_388_608 }, protocol: 'http2' });
    expect(sessions.outlierDetection).toBeUndefined();
    expect(snapshot.clusters.get('frontend.default:8080')).toMatchObject({ lbPolicy: 'least_request', connectTimeoutMs: 5000 });
    const vh = snapshot.routeConfigs.get('outbound')!.virtualHosts.find((v) => v.name === 'sessions.default:7000')!;
    expect(vh.routes[0]!.action.hashPolicies).toEqual([{ kind: 'header', name: 'x-user', terminal: false }]);
  });

  it('says a sidecar cluster policy in lb_policy alone (an Envoy sidecar would prefer a load_balancing_policy list)', () => {
    const { resources } = compile();
    const c = decodeMessage<any>(MESSAGE_NAMES.Cluster, resources.clusters.find((r) => r.name === 'sessions.default:7000')!.value);
    expect(c.load_balancing_policy).toBeUndefined();
    expect(c.lb_policy).toBe('RING_HASH');
  });

  it('builds egress listeners (http with inline route, tcp with TcpProxy) and the inbound side', () => {
    const { snapshot } = compile();
    const http = snapshot.listeners.get('outbound:19080')!;
    expect(http).toMatchObject({ address: '127.0.0.1', port: 19080, direction: 'outbound', http: { routeConfigName: 'outbound:19080' } });
    expect(http.tcp).toBeUndefined();
    const egressRoute = snapshot.routeConfigs.get('outbound:19080')!;
    expect(egressRoute.virtualHosts[0]!.domains).toEqual(['*']);
    expect(egressRoute.virtualHosts[0]!.routes[0]!.action).toMatchObject({ clusters: [{ name: 'backend.default:8080', weight: 1 }], timeoutMs: 5000 });
    expect(snapshot.listeners.get('outbound:15432')).toEqual({
      name: 'outbound:15432', address: '127.0.0.1', port: 15432, direction: 'outbound', firstByteTimeoutMs: 15_000, useOriginalDst: false, bindToPort: true,
      tcp: { statPrefix: 'outbound:15432', cluster: 'db.default:5432', idleTimeoutMs: 3_600_000 },
    });
    const inbound = snapshot.listeners.get('inbound')!;
    expect(inbound).toMatchObject({ address: '0.0.0.0', port: 15006, direction: 'inbound', http: { routeConfigName: 'inbound' } });
    const inRoute = snapshot.routeConfigs.get('inbound')!.virtualHosts[0]!;
    expect(inRoute.domains).toEqual(['*']);
    expect(inRoute.routes[0]!.action).toMatchObject({ clusters: [{ name: 'inbound:8080', weight: 1 }], timeoutMs: 0 });
    expect(snapshot.clusters.get('inbound:8080')).toMatchObject({
      protocol: 'http1', endpoints: [{ address: '127.0.0.1', port: 8080, weight: 1, region: '', zone: '', healthy: true }],
    });
    expect(snapshot.clusters.get('inbound:8080')!.edsServiceName).toBeUndefined();
  });

  it('compiles tcp, grpc and auto inbound sides', () => {
    const db = compile({ ...FRONTEND, id: 'db-1', service: 'db', appPort: 5432 }).snapshot;
    expect(db.listeners.get('inbound')).toMatchObject({ tcp: { cluster: 'inbound:5432' } });
    expect(db.listeners.get('inbound')!.http).toBeUndefined();
    const grpc = compile({ ...FRONTEND, id: 's-1', service: 'sessions', appPort: 7000 }).snapshot;
    expect(grpc.clusters.get('inbound:7000')!.protocol).toBe('http2');
    const auto = parseMeshConfig('services: [{ name: a, ports: [{ port: 80, protocol: auto }] }]');
    const res = compileForNode(auto, { ...FRONTEND, service: 'a', appPort: 80 });
    const { snapshot, errors } = buildSnapshot(res, 'v');
    expect(errors).toEqual([]);
    expect(snapshot.listeners.get('inbound')).toMatchObject({ http: { routeConfigName: 'inbound' }, tcp: { cluster: 'inbound:80' } });
    const l = decodeMessage<any>(MESSAGE_NAMES.Listener, res.listeners.find((r) => r.name === 'inbound')!.value);
    expect(l.listener_filters[0].name).toBe('envoy.filters.listener.http_inspector');
    expect(l.filter_chains[0].filter_chain_match.application_protocols).toEqual(['http/1.1', 'h2c']);
  });

  it('still compiles outbound for a node whose service is unknown, with a warning', () => {
    const res = compileForNode(parseMeshConfig(MESH_YAML), { ...FRONTEND, service: 'ghost' });
    expect(res.listeners.map((r) => r.name)).toEqual(['outbound']);
    expect(res.warnings[0]).toMatch(/ghost\.default .* not in the mesh config/);
    const noApp = compileForNode(parseMeshConfig(MESH_YAML), { ...FRONTEND, appPort: undefined });
    expect(noApp.listeners.map((r) => r.name)).not.toContain('inbound');
    expect(noApp.clusters.map((r) => r.name)).not.toContain('inbound:8080');
  });

  it('gives bare names only to services of the node\'s own namespace, so one name in two namespaces never clashes', () => {
    // KNOWN BUG 8: before, both `a`s got the bare domains `a` and `a:80`, and every proxy NACKed the route table.
    const mesh = parseMeshConfig(`
services:
  - { name: a, namespace: ns1, ports: [{ port: 80 }, { port: 81 }] }
  - { name: a, ports: [{ port: 80 }] }
  - { name: b, namespace: ns1, ports: [{ port: 80 }] }
`);
    const domainsFor = (namespace: string) => {
      const res = compileForNode(mesh, { ...FRONTEND, service: 'a', namespace, appPort: 80 });
      const { snapshot, errors } = buildSnapshot(res, 'v');
      expect(errors).toEqual([]);
      return Object.fromEntries(snapshot.routeConfigs.get('outbound')!.virtualHosts.map((v) => [v.name, v.domains]));
    };
    const qualified = (name: string, ns: string, port: number, withoutPort = true) => {
      const names = [`${name}.${ns}`, `${name}.${ns}.svc`, `${name}.${ns}.svc.cluster.local`];
      return [...(withoutPort ? names : []), ...names.map((n) => `${n}:${port}`)];
    };
    expect(domainsFor('ns1')).toEqual({
      'a.ns1:80': ['a', ...qualified('a', 'ns1', 80).slice(0, 3), 'a:80', ...qualified('a', 'ns1', 80).slice(3)],
      'a.ns1:81': ['a:81', ...qualified('a', 'ns1', 81, false)],
      'a.default:80': qualified('a', 'default', 80),
      'b.ns1:80': ['b', ...qualified('b', 'ns1', 80).slice(0, 3), 'b:80', ...qualified('b', 'ns1', 80).slice(3)],
    });
    const fromDefault = domainsFor('default');
    expect(fromDefault['a.default:80']).toEqual(['a', ...qualified('a', 'default', 80).slice(0, 3), 'a:80', ...qualified('a', 'default', 80).slice(3)]);
    expect(fromDefault['a.ns1:80']).toEqual(qualified('a', 'ns1', 80));
    expect(fromDefault['b.ns1:80']).toEqual(qualified('b', 'ns1', 80));
    // A namespace the mesh does not name: no bare names at all, and one shared table (nodes cannot grow a cache).
    const elsewhere = domainsFor('elsewhere');
    expect(Object.values(elsewhere).flat().filter((d) => !d.includes('.'))).toEqual([]);
    const table = (namespace: string) => compileForNode(mesh, { ...FRONTEND, service: 'x', namespace }).routes[0]!.value;
    expect(table('elsewhere')).toBe(table('other'));
    expect(table('ns1')).toBe(table('ns1'));
  });

  it('assembles the outbound route table from per-virtual-host fragments into the bytes a whole encode gives', () => {
    const res = compileForNode(parseMeshConfig(MESH_YAML), FRONTEND);
    const table = res.routes.find((r) => r.name === 'outbound')!.value;
    const decoded = decodeMessage<Record<string, unknown>>(MESSAGE_NAMES.RouteConfiguration, table);
    expect(Buffer.from(encodeMessage(MESSAGE_NAMES.RouteConfiguration, decoded)).equals(Buffer.from(table))).toBe(true);
  });

  it('round-trips node identity through the xDS Node, numbers or strings', () => {
    const wire = decodeMessage<any>(MESSAGE_NAMES.Node, encodeMessage(MESSAGE_NAMES.Node, nodeToXds(FRONTEND)));
    expect(nodeInfoFromXdsNode(wire)).toEqual(FRONTEND);
    expect(nodeInfoFromXdsNode({
      id: 'n', metadata: { fields: { service: { stringValue: 'a' }, appPort: { stringValue: '9000' }, inboundPort: { numberValue: 1 } } },
    })).toEqual({ id: 'n', service: 'a', namespace: 'default', serviceAccount: 'a', appPort: 9000, inboundPort: 1, outboundPort: 15001 });
  });

  it('loads a snapshot from a mesh file (pillion proxy --config)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pillion-'));
    const file = join(dir, 'mesh.yaml');
    writeFileSync(file, MESH_YAML);
    const { snapshot, errors, resources } = loadLocalSnapshot(file, FRONTEND);
    expect(errors).toEqual([]);
    expect(snapshot.version).toBe('local');
    expect(snapshot.clusters.size).toBe(resources.clusters.length);
    writeFileSync(file, 'services: [{ name: X }]');
    expect(() => loadLocalSnapshot(file, FRONTEND)).toThrow(/services\[0\]\.name: expected a DNS label/);
  });
});
