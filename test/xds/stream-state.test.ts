// Unit tests of the control server's pure parts: the per-stream ACK/NACK state machine and snapshot selection.
import { describe, expect, it } from 'vitest';
import { TYPE_URLS, decodeMessage } from '../../src/config/protos.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { AdsStreamState, DEFAULT_SUBSCRIPTION_LIMITS, MAX_NACK_MESSAGE_BYTES, scanDiscoveryRequest, toSubscription, truncateText, type SubscriptionLimits } from '../../xds/server.js';
import { encodeMessage, MESSAGE_NAMES } from '../../src/config/protos.js';
import { nodeToXds } from '../../xds/compiler.js';
import { buildNodeSnapshot, resourcesVersion, selectResources } from '../../xds/snapshot-cache.js';
import { MESH_YAML } from '../config/mesh-fixture.js';

const LDS = TYPE_URLS.Listener;
const CDS = TYPE_URLS.Cluster;
const EDS = TYPE_URLS.ClusterLoadAssignment;
const RDS = TYPE_URLS.RouteConfiguration;

const sidecar = { id: 'fe-1', service: 'frontend', namespace: 'default', serviceAccount: 'frontend', appPort: 8080, inboundPort: 15006, outboundPort: 15001 };
const proxyless = { id: 'grpc-client', service: '', namespace: 'default', serviceAccount: '', inboundPort: 15006, outboundPort: 15001 };

const mesh1 = parseMeshConfig(MESH_YAML);
const mesh2 = parseMeshConfig(MESH_YAML.replace('port: 18080', 'port: 18090'));
const mesh3 = parseMeshConfig(MESH_YAML.replace('port: 18080', 'port: 18099'));

function newState(limits?: Partial<SubscriptionLimits>) {
  let n = 0;
  let t = 1_000;
  return new AdsStreamState({ nonce: () => `n${++n}`, now: () => t++, ...(limits ? { limits } : {}) });
}

describe('AdsStreamState', () => {
  it('answers the first request, then treats a matching nonce as ACK and sends nothing more', () => {
    const s = newState();
    const snap = buildNodeSnapshot(mesh1, sidecar);
    const first = s.onRequest({ type_url: LDS, resource_names: [] }, snap);
    expect(first.kind).toBe('initial');
    expect(first.response!.nonce).toBe('n1');
    expect(first.response!.resources.map((r) => r.name).sort()).toEqual(['inbound', 'outbound', 'outbound:15432', 'outbound:19080']);
    const ack = s.onRequest({ type_url: LDS, resource_names: [], response_nonce: 'n1', version_info: first.response!.version }, snap);
    expect(ack).toEqual({ kind: 'ack' });
    expect(s.status().get(LDS)!.ackedVersion).toBe(first.response!.version);
    // Same config again: nothing to push.
    expect(s.onSnapshot(buildNodeSnapshot(mesh1, sidecar))).toEqual([]);
  });

  it('records a NACK, never resends the rejected version, and sends again only for a new version', () => {
    const s = newState();
    const r1 = s.onRequest({ type_url: CDS }, buildNodeSnapshot(mesh1, sidecar)).response!;
    s.onRequest({ type_url: CDS, response_nonce: r1.nonce, version_info: r1.version }, buildNodeSnapshot(mesh1, sidecar));

    // mesh2 changes frontend's endpoint: the EDS set changes, the clusters do not.
    expect(s.onSnapshot(buildNodeSnapshot(mesh2, sidecar))).toEqual([]);
    // Change the clusters: push, then NACK it.
    const meshB = parseMeshConfig(MESH_YAML.replace('maxConnections: 100', 'maxConnections: 50'));
    const [r2] = s.onSnapshot(buildNodeSnapshot(meshB, sidecar));
    expect(r2!.version).not.toBe(r1.version);
    const nack = s.onRequest(
      { type_url: CDS, response_nonce: r2!.nonce, version_info: r1.version, error_detail: { code: 3, message: 'bad cluster' } },
      buildNodeSnapshot(meshB, sidecar),
    );
    expect(nack.kind).toBe('nack');
    expect(nack.response).toBeUndefined();
    expect(nack.nack).toEqual({ version: r2!.version, error: 'bad cluster', at: expect.any(Number) });
    const st = s.status().get(CDS)!;
    expect(st.ackedVersion).toBe(r1.version);
    expect(st.lastNack!.version).toBe(r2!.version);
    // The same (rejected) config again, e.g. a touch of the file or another reload: not resent.
    expect(s.onSnapshot(buildNodeSnapshot(meshB, sidecar))).toEqual([]);
    // A config that compiles to a different version: sent.
    const [r3] = s.onSnapshot(buildNodeSnapshot(mesh1, sidecar));
    expect(r3!.version).toBe(r1.version);
    expect(r3!.nonce).not.toBe(r2!.nonce);
  });

  it('ignores stale nonces but keeps their subscription, and answers a changed subscription at once', () => {
    const s = newState();
    const snap = buildNodeSnapshot(mesh1, sidecar);
    const r1 = s.onRequest({ type_url: EDS, resource_names: ['backend.default:8080'] }, snap).response!;
    expect(r1.resources.map((r) => r.name)).toEqual(['backend.default:8080']);
    // A request with an old nonce that also changes the names: no answer (spec), names kept.
    const stale = s.onRequest({ type_url: EDS, resource_names: ['db.default:5432'], response_nonce: 'old' }, snap);
    expect(stale).toEqual({ kind: 'stale' });
    expect(s.status().get(EDS)!.subscription).toEqual(['db.default:5432']);
    // The ACK of r1 then carries the new names: answered with the new set right away.
    const ack = s.onRequest({ type_url: EDS, resource_names: ['db.default:5432'], response_nonce: r1.nonce }, snap);
    expect(ack.kind).toBe('ack');
    expect(ack.response!.resources.map((r) => r.name)).toEqual(['db.default:5432']);
    // Adding a name that does not exist still gets an answer (the client learns it does not exist).
    const r3 = s.onRequest({ type_url: EDS, resource_names: ['db.default:5432', 'nope.default:1'], response_nonce: ack.response!.nonce }, snap);
    expect(r3.response!.resources.map((r) => r.name)).toEqual(['db.default:5432']);
    expect(r3.response!.version).toBe(ack.response!.version);
  });

  it('pushes only the types whose version changed, in CDS, EDS, LDS, RDS order', () => {
    const s = newState();
    const snap = buildNodeSnapshot(mesh1, sidecar);
    for (const t of [RDS, LDS, EDS, CDS]) {
      const r = s.onRequest({ type_url: t }, snap).response!;
      s.onRequest({ type_url: t, response_nonce: r.nonce }, snap);
    }
    expect(s.onSnapshot(buildNodeSnapshot(mesh2, sidecar)).map((r) => r.typeUrl)).toEqual([EDS]);
    const meshRoutes = parseMeshConfig(MESH_YAML.replace('attempts: 2', 'attempts: 3').replace('port: 18080', 'port: 18099'));
    expect(s.onSnapshot(buildNodeSnapshot(meshRoutes, sidecar)).map((r) => r.typeUrl)).toEqual([EDS, RDS]);
    expect(s.onSnapshot(buildNodeSnapshot(mesh3, sidecar)).map((r) => r.typeUrl)).toEqual([RDS]);
  });

  it('keeps at most 1 KiB of a NACK message, saying how much was cut', () => {
    // Before: a NACK's error_detail.message was kept (and logged) whole: 1 MiB each, 200 NACKs → +224 MiB RSS.
    const s = newState();
    const snap = buildNodeSnapshot(mesh1, sidecar);
    const r1 = s.onRequest({ type_url: CDS }, snap).response!;
    const huge = 'x'.repeat(1 << 20);
    const nack = s.onRequest({ type_url: CDS, response_nonce: r1.nonce, error_detail: { code: 3, message: huge } }, snap);
    expect(nack.nack!.error).toBe(`${'x'.repeat(1024)}… (${(1 << 20) - 1024} more bytes)`);
    expect(s.status().get(CDS)!.lastNack!.error).toBe(nack.nack!.error);
  });

  it('truncates text on a UTF-8 character boundary, counting the bytes left out', () => {
    expect(MAX_NACK_MESSAGE_BYTES).toBe(1024);
    expect(truncateText('short')).toBe('short');
    expect(truncateText('a'.repeat(1024))).toBe('a'.repeat(1024));
    expect(truncateText('a'.repeat(1025))).toBe(`${'a'.repeat(1024)}… (1 more bytes)`);
    // 'é' is 2 bytes: 512 of them fit exactly, 513 do not; a cut never splits one.
    expect(truncateText('é'.repeat(512))).toBe('é'.repeat(512));
    expect(truncateText('é'.repeat(513))).toBe(`${'é'.repeat(512)}… (2 more bytes)`);
    expect(truncateText(`a${'é'.repeat(600)}`)).toBe(`a${'é'.repeat(511)}… (${1 + 1200 - 1023} more bytes)`);
    // A 4-byte character (a surrogate pair) across the limit is left out whole.
    expect(truncateText(`${'a'.repeat(1022)}😀b`)).toBe(`${'a'.repeat(1022)}… (5 more bytes)`);
    expect(truncateText('abcdef', 4)).toBe('abcd… (2 more bytes)');
  });

  it('bounds what a stream subscribes to: names per type, name length, name characters per stream', () => {
    // Before: every name was kept, whatever the count (40 streams of 100,000 names: 66 → 461 MiB RSS).
    expect(DEFAULT_SUBSCRIPTION_LIMITS).toEqual({ maxNamesPerType: 10_000, maxNameLength: 1_024, maxNameCharsPerStream: 2 * 1024 * 1024 });
    const snap = buildNodeSnapshot(mesh1, sidecar);
    const atLimit = Array.from({ length: 10_000 }, (_, i) => `n${i}`);
    const s = newState();
    const first = s.onRequest({ type_url: EDS, resource_names: atLimit }, snap);
    expect(first.kind).toBe('initial');
    expect(first.response!.resources).toEqual([]);
    expect((s.status().get(EDS)!.subscription as string[]).length).toBe(10_000);
    // One more name: refused, and the subscription held is unchanged (stale nonce or not).
    expect(s.onRequest({ type_url: EDS, resource_names: [...atLimit, 'x'], response_nonce: first.response!.nonce }, snap)).toEqual({
      kind: 'refused',
      refused: { limit: 'names_per_type', reason: '10001 resource names for EDS; this server takes at most 10000 per type per stream' },
    });
    expect((s.status().get(EDS)!.subscription as string[]).length).toBe(10_000);
    expect(s.onRequest({ type_url: CDS, resource_names: ['a'.repeat(1_024)] }, snap).kind).toBe('initial');
    expect(s.onRequest({ type_url: RDS, resource_names: ['ok', 'a'.repeat(1_025)] }, snap)).toEqual({
      kind: 'refused',
      refused: { limit: 'name_length', reason: 'a RDS resource name of 1025 characters; this server takes at most 1024' },
    });
    expect(s.status().has(RDS)).toBe(false);

    // Characters over all types: each type's own names are replaced, the others' count.
    const small = newState({ maxNameCharsPerStream: 100 });
    expect(small.onRequest({ type_url: EDS, resource_names: ['e'.repeat(60)] }, snap).kind).toBe('initial');
    expect(small.onRequest({ type_url: CDS, resource_names: ['c'.repeat(41)] }, snap)).toEqual({
      kind: 'refused',
      refused: { limit: 'name_chars_per_stream', reason: '101 characters of resource names on one stream; this server takes at most 100' },
    });
    expect(small.onRequest({ type_url: CDS, resource_names: ['c'.repeat(40)] }, snap).kind).toBe('initial');
    // Replacing EDS's 60 characters by 60 others fits; a wildcard holds none.
    expect(small.onRequest({ type_url: EDS, resource_names: ['f'.repeat(60)], response_nonce: 'old' }, snap).kind).toBe('stale');
    expect(small.onRequest({ type_url: EDS, resource_names: [], response_nonce: 'old' }, snap).kind).toBe('stale');
    expect(small.onRequest({ type_url: CDS, resource_names: ['c'.repeat(100)], response_nonce: 'old' }, snap).kind).toBe('stale');
  });

  it('counts resource_names and reads type_url on the wire, so a request past the limit is never decoded', () => {
    const req = (extra: object) =>
      encodeMessage(MESSAGE_NAMES.DiscoveryRequest, {
        version_info: 'v1', node: nodeToXds(sidecar), type_url: EDS, response_nonce: 'n1',
        error_detail: { code: 3, message: 'no' }, ...extra,
      });
    expect(scanDiscoveryRequest(req({}))).toEqual({ names: 0, typeUrl: EDS });
    const many = Array.from({ length: 20_000 }, (_, i) => `name-${i}`);
    expect(scanDiscoveryRequest(req({ resource_names: many }))).toEqual({ names: 20_000, typeUrl: EDS });
    expect(scanDiscoveryRequest(req({ resource_names: ['a', ''] }))).toEqual({ names: 2, typeUrl: EDS });
    // Bytes that are not a plain run of fields: left to protobufjs.
    const bytes = req({ resource_names: many });
    expect(scanDiscoveryRequest(bytes.subarray(0, bytes.length - 3))).toBeUndefined();
    expect(scanDiscoveryRequest(Uint8Array.from([0x0b, 0x00]))).toBeUndefined();
    expect(scanDiscoveryRequest(Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))).toBeUndefined();
    expect(scanDiscoveryRequest(new Uint8Array(0))).toEqual({ names: 0, typeUrl: '' });
  });

  it('ignores types it does not serve', () => {
    const s = newState();
    expect(s.onRequest({ type_url: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret' }, buildNodeSnapshot(mesh1, sidecar))).toEqual({
      kind: 'unknown-type',
    });
  });

  it('reads empty resource_names and "*" as wildcard', () => {
    expect(toSubscription([])).toBe('*');
    expect(toSubscription(undefined)).toBe('*');
    expect(toSubscription(['a', '*'])).toBe('*');
    expect(toSubscription(['b', 'a', 'b'])).toEqual(['a', 'b']);
  });
});

describe('snapshots', () => {
  it('serves api_listener listeners for grpc ports only by name to sidecars, and by wildcard to proxyless nodes', () => {
    const side = buildNodeSnapshot(mesh1, sidecar);
    expect(selectResources(side, LDS, '*').map((r) => r.name)).not.toContain('sessions.default:7000');
    expect(selectResources(side, RDS, '*').map((r) => r.name)).toEqual(['outbound']);
    expect(selectResources(side, LDS, ['sessions.default:7000']).map((r) => r.name)).toEqual(['sessions.default:7000']);
    const pl = buildNodeSnapshot(mesh1, proxyless);
    expect(pl.proxyless).toBe(true);
    expect(pl.warnings).toEqual([]);
    expect(selectResources(pl, LDS, '*').map((r) => r.name)).toContain('sessions.default:7000');

    const [listener] = selectResources(side, LDS, ['sessions.default:7000']);
    const l = decodeMessage<Record<string, any>>('envoy.config.listener.v3.Listener', listener!.value);
    expect(l.api_listener.api_listener.type_url).toBe(TYPE_URLS.HttpConnectionManager);
    const hcm = decodeMessage<Record<string, any>>('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', l.api_listener.api_listener.value);
    expect(hcm.rds.route_config_name).toBe('sessions.default:7000');
    expect(hcm.rds.config_source.ads).toBeDefined();
    expect(hcm.http_filters.map((f: { name: string }) => f.name)).toEqual(['envoy.filters.http.router']);
    const [route] = selectResources(side, RDS, ['sessions.default:7000']);
    const rc = decodeMessage<Record<string, any>>('envoy.config.route.v3.RouteConfiguration', route!.value);
    expect(rc.virtual_hosts[0].domains).toContain('sessions.default:7000');
    expect(rc.virtual_hosts[0].routes[0]).toMatchObject({ match: { prefix: '/' }, route: { cluster: 'sessions.default:7000' } });
  });

  it('gives grpc ClusterLoadAssignments locality weights (grpc-js-xds ignores localities without one)', () => {
    const snap = buildNodeSnapshot(mesh1, proxyless);
    const [cla] = selectResources(snap, EDS, ['sessions.default:7000']);
    const decoded = decodeMessage<Record<string, any>>('envoy.config.endpoint.v3.ClusterLoadAssignment', cla!.value);
    expect(decoded.endpoints[0].load_balancing_weight).toEqual({ value: 1 });
    const [cluster] = selectResources(snap, CDS, ['sessions.default:7000']);
    const c = decodeMessage<Record<string, any>>('envoy.config.cluster.v3.Cluster', cluster!.value);
    // DESIGN.md §5: a cluster for proxyless clients must offer round_robin or ring_hash: here in lb_policy, which
    // every gRPC client reads (C-core 1.51 only that), with no load_balancing_policy list (grpc-js-xds 1.14 NACKs a
    // RingHash entry there); test/xds/proxyless-clusters.test.ts has every policy.
    expect(c.lb_policy).toBe('RING_HASH');
    expect(c.ring_hash_lb_config.minimum_ring_size).toBeDefined();
    expect(c.load_balancing_policy).toBeUndefined();
  });

  it('versions are content hashes: equal configs give equal versions, order does not matter', () => {
    const a = selectResources(buildNodeSnapshot(mesh1, sidecar), CDS, '*');
    const b = selectResources(buildNodeSnapshot(parseMeshConfig(MESH_YAML), sidecar), CDS, '*');
    expect(resourcesVersion(a)).toBe(resourcesVersion(b));
    expect(resourcesVersion([...a].reverse())).toBe(resourcesVersion(a));
    expect(resourcesVersion(a)).toMatch(/^[0-9a-f]{16}$/);
    expect(resourcesVersion(a.slice(1))).not.toBe(resourcesVersion(a));
  });
});
