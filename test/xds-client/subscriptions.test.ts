// The pure xDS client state: what each request carries (version, nonce, names), ACK/NACK decisions, name
// tracking for RDS/EDS, warming, and what a reconnect re-sends. No sockets.
import { beforeEach, describe, expect, it } from 'vitest';
import { encodeMessage, MESSAGE_NAMES, TYPE_URLS } from '../../src/config/protos.js';
import { buildSnapshot } from '../../src/config/snapshot.js';
import {
  INVALID_ARGUMENT,
  SubscriptionState,
  resourceName,
  type ApplyOutcome,
  type Pending,
  type XdsResponse,
} from '../../src/xds/subscriptions.js';
import { badCluster, compile, listenerWithoutAddress, meshYaml, response } from './fixtures.js';

/** What Proxy.apply would say about a candidate (same translators, no sockets). */
function judge(p: Pending): ApplyOutcome {
  const { errors } = buildSnapshot(p.resources, p.version);
  return { applied: errors.length === 0, errors };
}

function feed(state: SubscriptionState, r: XdsResponse) {
  const p = state.prepare(r);
  if ('ignore' in p) throw new Error(p.ignore);
  return { pending: p, verdict: state.settle(p, judge(p)) };
}

const LDS = TYPE_URLS.Listener;
const CDS = TYPE_URLS.Cluster;
const RDS = TYPE_URLS.RouteConfiguration;
const EDS = TYPE_URLS.ClusterLoadAssignment;

describe('SubscriptionState', () => {
  const res = compile(meshYaml(18081));
  let state: SubscriptionState;
  beforeEach(() => {
    state = new SubscriptionState();
  });

  it('first requests: CDS then LDS as wildcard, empty version and nonce; no RDS/EDS before names are known', () => {
    expect(state.streamStarted()).toEqual([
      { typeUrl: CDS, versionInfo: '', resourceNames: [], responseNonce: '' },
      { typeUrl: LDS, versionInfo: '', resourceNames: [], responseNonce: '' },
    ]);
  });

  it('ACKs a good CDS response with its version and nonce, then subscribes to the EDS names the clusters use', () => {
    state.streamStarted();
    const { verdict } = feed(state, response(CDS, 'v1', 'n1', res.clusters));
    expect(verdict.ack).toBe(true);
    expect(verdict.version).toBe('v1');
    expect(verdict.requests).toEqual([
      { typeUrl: CDS, versionInfo: 'v1', resourceNames: [], responseNonce: 'n1' },
      // EDS clusters without service_name read the assignment named like the cluster; version '' (none ACKed yet).
      { typeUrl: EDS, versionInfo: '', resourceNames: ['backend.default:8080', 'frontend.default:8080'], responseNonce: '' },
    ]);
    expect(state.names('endpoints')).toEqual(['backend.default:8080', 'frontend.default:8080']);
  });

  it('subscribes to RDS names only for listeners that use rds, not inline route_config', () => {
    const withInbound = compile(meshYaml(18081), { id: 'n', service: 'frontend', namespace: 'default', serviceAccount: 'frontend', appPort: 9000, inboundPort: 0, outboundPort: 0 });
    expect(withInbound.listeners.map((l) => l.name).sort()).toEqual(['inbound', 'outbound']);
    state.streamStarted();
    const { verdict } = feed(state, response(LDS, 'v1', 'n1', withInbound.listeners));
    expect(verdict.requests[1]).toEqual({ typeUrl: RDS, versionInfo: '', resourceNames: ['outbound'], responseNonce: '' });
    expect(state.names('routes')).toEqual(['outbound']);
  });

  it('NACKs a bad response: previous version, the response nonce, INVALID_ARGUMENT with every message', () => {
    state.streamStarted();
    feed(state, response(CDS, 'v1', 'n1', res.clusters));
    const bad = [...res.clusters, badCluster('bad1.default:8080'), badCluster('bad2.default:8080')];
    const { verdict } = feed(state, response(CDS, 'v2', 'n2', bad));
    expect(verdict.ack).toBe(false);
    expect(verdict.version).toBe('v1');
    expect(verdict.rejectedVersion).toBe('v2');
    expect(verdict.requests).toHaveLength(1);
    const nack = verdict.requests[0]!;
    expect(nack).toMatchObject({ typeUrl: CDS, versionInfo: 'v1', resourceNames: [], responseNonce: 'n2' });
    expect(nack.errorDetail?.code).toBe(INVALID_ARGUMENT);
    expect(nack.errorDetail?.message).toContain('bad1.default:8080: lb_policy: CLUSTER_PROVIDED is not supported');
    expect(nack.errorDetail?.message).toContain('bad2.default:8080');
    // The last good clusters stay what the next candidate of another type is built with.
    expect(state.lastGood().clusters.map((c) => c.name)).toEqual(res.clusters.map((c) => c.name));
    expect(state.version('clusters')).toBe('v1');
    expect(state.nonce('clusters')).toBe('n2');
  });

  it('NACKs the very first response with version "" and does not warm', () => {
    state.streamStarted();
    const { verdict } = feed(state, response(LDS, 'v1', 'n1', [listenerWithoutAddress()]));
    expect(verdict.ack).toBe(false);
    expect(verdict.requests[0]).toMatchObject({ versionInfo: '', responseNonce: 'n1' });
    expect(verdict.requests[0]!.errorDetail!.message).toContain('broken: address: missing socket_address');
    expect(state.isWarm()).toBe(false);
  });

  it('NACKs when apply throws (e.g. a listener cannot bind), keeping the old version', () => {
    state.streamStarted();
    const p = state.prepare(response(LDS, 'v1', 'n1', res.listeners)) as Pending;
    const verdict = state.settle(p, { thrown: 'listener outbound: cannot bind 127.0.0.1:1: EACCES' });
    expect(verdict.ack).toBe(false);
    expect(verdict.requests[0]!.errorDetail).toEqual({ code: 3, message: 'listener outbound: cannot bind 127.0.0.1:1: EACCES' });
    expect(state.version('listeners')).toBe('');
  });

  it('bounds the NACK error_detail (thousands of rejected resources must not pass the server message limit)', () => {
    state.streamStarted();
    const p = state.prepare(response(LDS, 'v1', 'n1', res.listeners)) as Pending;
    const errors = Array.from({ length: 5000 }, (_, i) => ({ typeUrl: LDS, name: `l${i}`, message: 'address: missing socket_address' }));
    const verdict = state.settle(p, { applied: false, errors });
    const message = verdict.requests[0]!.errorDetail!.message;
    expect(message.length).toBeLessThan(8300);
    expect(message).toMatch(/^l0: address: missing socket_address; l1: /);
    expect(message).toMatch(/… \(\d+ more characters\)$/);
  });

  it('builds each candidate from the new resources of one type and the last good of the others', () => {
    state.streamStarted();
    feed(state, response(CDS, 'v1', 'c1', res.clusters));
    const p = state.prepare(response(LDS, 'v1', 'l1', res.listeners)) as Pending;
    expect(p.resources.clusters).toBe(state.lastGood().clusters);
    expect(p.resources.listeners.map((l) => l.name)).toEqual(['outbound']);
    expect(p.resources.routes).toEqual([]);
  });

  it('is warm only when listeners, clusters and every referenced RDS and EDS resource have arrived', () => {
    state.streamStarted();
    feed(state, response(CDS, 'v1', 'c1', res.clusters));
    expect(state.isWarm()).toBe(false);
    feed(state, response(LDS, 'v1', 'l1', res.listeners));
    expect(state.isWarm()).toBe(false);
    // Only one of the two assignments: still warming (a response of a name-subscribed type may be partial).
    feed(state, response(EDS, 'v1', 'e1', res.endpoints.filter((e) => e.name === 'backend.default:8080')));
    expect(state.isWarm()).toBe(false);
    feed(state, response(RDS, 'v1', 'r1', res.routes));
    expect(state.isWarm()).toBe(false);
    feed(state, response(EDS, 'v2', 'e2', res.endpoints.filter((e) => e.name === 'frontend.default:8080')));
    expect(state.isWarm()).toBe(true);
    // The partial EDS response kept the assignment it did not mention.
    expect(state.lastGood().endpoints.map((e) => e.name).sort()).toEqual(['backend.default:8080', 'frontend.default:8080']);
  });

  it('leaves out unrequested RDS/EDS resources; ignores types nobody asked for', () => {
    state.streamStarted();
    expect(state.prepare(response(RDS, 'v1', 'r0', res.routes))).toEqual({ ignore: 'no subscription for routes' });
    expect(state.prepare(response('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', 'v1', 's', []))).toHaveProperty('ignore');
    feed(state, response(LDS, 'v1', 'l1', res.listeners));
    const stray = { typeUrl: RDS, value: encodeMessage(MESSAGE_NAMES.RouteConfiguration, { name: 'elsewhere', virtual_hosts: [] }) };
    const p = state.prepare(response(RDS, 'v1', 'r1', [...res.routes, stray])) as Pending;
    expect(p.unrequested).toEqual(['elsewhere']);
    expect(p.list.map((r) => r.name)).toEqual(['outbound']);
  });

  it('changes subscriptions as names come and go, with the last ACKed version and the last nonce', () => {
    state.streamStarted();
    feed(state, response(CDS, 'v1', 'c1', res.clusters));
    feed(state, response(EDS, 'v1', 'e1', res.endpoints));
    const withExtra = compile(meshYaml(18081, { extraPort: 18082 }));
    const { verdict } = feed(state, response(CDS, 'v2', 'c2', withExtra.clusters));
    expect(verdict.requests[1]).toEqual({
      typeUrl: EDS,
      versionInfo: 'v1',
      resourceNames: ['backend.default:8080', 'extra.default:8080', 'frontend.default:8080'],
      responseNonce: 'e1',
    });
    // Dropping a cluster drops its assignment from the subscription and from the last good set.
    const { verdict: v3 } = feed(state, response(CDS, 'v3', 'c3', res.clusters.filter((c) => c.name !== 'frontend.default:8080')));
    expect(v3.requests[1]).toMatchObject({ typeUrl: EDS, resourceNames: ['backend.default:8080'], responseNonce: 'e1' });
    expect(state.lastGood().endpoints.map((e) => e.name)).toEqual(['backend.default:8080']);
    // Same names again: no extra request.
    expect(feed(state, response(CDS, 'v4', 'c4', res.clusters.filter((c) => c.name !== 'frontend.default:8080'))).verdict.requests).toHaveLength(1);
  });

  it('a NACKed response changes no subscription', () => {
    state.streamStarted();
    feed(state, response(CDS, 'v1', 'c1', res.clusters));
    const withExtra = compile(meshYaml(18081, { extraPort: 18082 }));
    const { verdict } = feed(state, response(CDS, 'v2', 'c2', [...withExtra.clusters, badCluster()]));
    expect(verdict.ack).toBe(false);
    expect(verdict.requests).toHaveLength(1);
    expect(state.names('endpoints')).toEqual(['backend.default:8080', 'frontend.default:8080']);
  });

  it('after a reconnect: last ACKed versions and names, nonces cleared', () => {
    state.streamStarted();
    feed(state, response(CDS, 'v1', 'c1', res.clusters));
    feed(state, response(LDS, 'v7', 'l1', res.listeners));
    feed(state, response(RDS, 'v7', 'r1', res.routes));
    feed(state, response(EDS, 'v1', 'e1', res.endpoints));
    feed(state, response(CDS, 'v2', 'c2', [...res.clusters, badCluster()])); // NACKed: still v1
    expect(state.streamStarted()).toEqual([
      { typeUrl: CDS, versionInfo: 'v1', resourceNames: [], responseNonce: '' },
      { typeUrl: EDS, versionInfo: 'v1', resourceNames: ['backend.default:8080', 'frontend.default:8080'], responseNonce: '' },
      { typeUrl: LDS, versionInfo: 'v7', resourceNames: [], responseNonce: '' },
      { typeUrl: RDS, versionInfo: 'v7', resourceNames: ['outbound'], responseNonce: '' },
    ]);
    expect(state.isWarm()).toBe(true);
  });

  it('reads resource names from field 1 without a full decode, "" for garbage', () => {
    expect(res.clusters.map((c) => resourceName(c.value))).toEqual(res.clusters.map((c) => c.name));
    expect(res.endpoints.map((c) => resourceName(c.value))).toEqual(res.endpoints.map((c) => c.name));
    expect(resourceName(new Uint8Array([0x0a, 0x10, 0x41]))).toBe('');
  });

  it('a resource with unreadable bytes is NACKed by the translator, not dropped', () => {
    state.streamStarted();
    const { verdict } = feed(state, response(CDS, 'v1', 'c1', [...res.clusters, { typeUrl: CDS, value: new Uint8Array([0x0a, 0x10, 0x41]) }]));
    expect(verdict.ack).toBe(false);
    expect(verdict.requests[0]!.errorDetail!.message).toMatch(/\(unnamed\)/);
  });
});
