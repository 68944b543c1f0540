// The proxy's ADS client against a scripted ADS server (scripted-ads.ts, real gRPC on 127.0.0.1): the exact
// requests it sends (Node, versions, nonces, names, NACK details), warming, and traffic through the config it
// accepted, before, during and after a NACK, while the control server is gone, and after it comes back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TYPE_URLS } from '../../src/config/protos.js';
import { Proxy } from '../../src/proxy.js';
import { startHttpBackend, deadPort, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { badCluster, compile, listenerWithoutAddress, meshYaml, NODE } from './fixtures.js';
import { startXdsProxy as startXdsProxyWith, type XdsProxy } from './xds-proxy.js';
import { startScriptedAds, type ScriptedAds, type WireRequest } from './scripted-ads.js';

const LDS = TYPE_URLS.Listener;
const CDS = TYPE_URLS.Cluster;
const RDS = TYPE_URLS.RouteConfiguration;
const EDS = TYPE_URLS.ClusterLoadAssignment;

// Short backoff so reconnect tests take milliseconds; the bounds themselves are unit-tested.
const startXdsProxy = (servers: string[]): Promise<XdsProxy> => startXdsProxyWith(servers, { backoff: { baseMs: 20, maxMs: 200 } });

const is = (type: string, nonce?: string) => (r: WireRequest) =>
  r.type_url === type && (nonce === undefined || (r.response_nonce ?? '') === nonce);

async function ready(p: Proxy): Promise<number> {
  return (await request(p.adminPort, { path: '/ready' })).status;
}

function outboundPort(p: Proxy): number {
  const l = p.listeners().find((x) => x.name === 'outbound');
  if (l === undefined) throw new Error('no outbound listener');
  return l.port;
}

async function metric(p: Proxy, text: string): Promise<number | undefined> {
  const line = (await p.registry.metrics()).split('\n').find((l) => l.startsWith(text + ' '));
  return line === undefined ? undefined : Number(line.slice(text.length + 1));
}

/** Fire requests at the backend through the proxy until stop() is called; resolves with every status seen. */
function trafficLoop(port: number): { stop(): Promise<number[]>; until(n: number): Promise<void>; count(): number } {
  const statuses: number[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      try {
        statuses.push((await request(port, { host: 'backend', path: '/loop' })).status);
      } catch {
        statuses.push(-1);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return statuses;
    },
    count: () => statuses.length,
    /** Waits until n answers have come back: a count, not a fixed pause, so a busy machine cannot starve it. */
    async until(n: number) {
      const deadline = Date.now() + 5_000;
      while (statuses.length < n) {
        if (Date.now() > deadline) {
          running = false;
          throw new Error(`traffic loop: ${statuses.length} of ${n} answers within 5 s`);
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

describe('ADS client against a scripted server', () => {
  let server: ScriptedAds;
  let backend: Backend;
  let extra: Backend;
  let x: XdsProxy;
  let res: ReturnType<typeof compile>;

  beforeAll(async () => {
    server = await startScriptedAds();
    backend = await startHttpBackend('backend');
    extra = await startHttpBackend('extra');
    res = compile(meshYaml(backend.port));
    x = await startXdsProxy([server.address]);
  });

  afterAll(async () => {
    await x?.close();
    await server?.close();
    await backend?.close();
    await extra?.close();
  });

  it('opens with the Node on the first request, CDS and LDS as wildcard; /ready is 503', async () => {
    const cds = await server.waitFor(is(CDS));
    const lds = await server.waitFor(is(LDS));
    expect(server.requests.indexOf(cds)).toBe(0);
    expect(cds.node?.id).toBe(NODE.id);
    expect(cds.node?.metadata?.fields?.service?.stringValue).toBe('frontend');
    expect(cds.version_info ?? '').toBe('');
    expect(cds.resource_names ?? []).toEqual([]);
    expect(lds.node).toBeUndefined();
    expect(await ready(x.proxy)).toBe(503);
  });

  it('ACKs each good response with its version and nonce, subscribes to RDS/EDS by name, warms, serves traffic', async () => {
    server.send(CDS, 'v1', 'c1', res.clusters);
    const cdsAck = await server.waitFor(is(CDS, 'c1'));
    expect(cdsAck.version_info).toBe('v1');
    expect(cdsAck.error_detail).toBeUndefined();
    const edsSub = await server.waitFor(is(EDS));
    expect(edsSub.resource_names).toEqual(['backend.default:8080', 'frontend.default:8080']);
    server.send(EDS, 'v1', 'e1', res.endpoints);
    await server.waitFor(is(EDS, 'e1'));

    server.send(LDS, 'v1', 'l1', res.listeners);
    expect((await server.waitFor(is(LDS, 'l1'))).version_info).toBe('v1');
    const rdsSub = await server.waitFor(is(RDS));
    expect(rdsSub.resource_names).toEqual(['outbound']);
    expect(rdsSub.version_info ?? '').toBe('');
    // Listeners are applied before their routes arrive (Envoy does the same): requests get no_route, not ready.
    const early = await request(outboundPort(x.proxy), { host: 'backend' });
    expect(early.status).toBe(404);
    expect(early.headers['x-pillion-reason']).toBe('no_route');
    expect(await ready(x.proxy)).toBe(503);

    server.send(RDS, 'v1', 'r1', res.routes);
    expect((await server.waitFor(is(RDS, 'r1'))).version_info).toBe('v1');
    expect(x.ads.isWarm()).toBe(true);
    expect(await ready(x.proxy)).toBe(200);
    const reply = await request(outboundPort(x.proxy), { host: 'backend', path: '/hello' });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).name).toBe('backend');
    expect(await metric(x.proxy, 'pillion_xds_connected')).toBe(1);
    expect(await metric(x.proxy, 'pillion_xds_updates_total{type="cds",result="ack"}')).toBe(1);
    expect(x.ads.connectedServer).toBe(server.address);
  });

  it('NACKs a Cluster with an unsupported lb_policy (previous version, its nonce, INVALID_ARGUMENT) and keeps serving', async () => {
    const port = outboundPort(x.proxy);
    const loop = trafficLoop(port);
    await loop.until(3);
    server.send(CDS, 'v2', 'c2', [...res.clusters, badCluster()]);
    const nack = await server.waitFor(is(CDS, 'c2'));
    // Traffic on both sides of the NACK: three answers before the update was sent, three more after the NACK.
    await loop.until(loop.count() + 3);
    const statuses = await loop.stop();
    expect(nack.version_info).toBe('v1');
    expect(nack.error_detail?.code).toBe(3);
    expect(nack.error_detail?.message).toContain('bad.default:8080: lb_policy: CLUSTER_PROVIDED is not supported');
    expect(statuses.length).toBeGreaterThan(5);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect((await request(port, { host: 'backend' })).status).toBe(200);
    expect(await metric(x.proxy, 'pillion_xds_updates_total{type="cds",result="nack"}')).toBe(1);
    // No EDS re-subscription came out of the rejected clusters.
    expect(server.requests.filter(is(EDS)).length).toBe(2);
  });

  it('NACKs a Listener without an address and keeps the listener it has', async () => {
    const port = outboundPort(x.proxy);
    server.send(LDS, 'v2', 'l2', [...res.listeners, listenerWithoutAddress()]);
    const nack = await server.waitFor(is(LDS, 'l2'));
    expect(nack.version_info).toBe('v1');
    expect(nack.error_detail?.message).toContain('broken: address: missing socket_address');
    expect(outboundPort(x.proxy)).toBe(port);
    expect((await request(port, { host: 'backend' })).status).toBe(200);
    expect(await ready(x.proxy)).toBe(200);
  });

  it('keeps serving when the control server dies', async () => {
    const port = outboundPort(x.proxy);
    const loop = trafficLoop(port);
    await server.close();
    await new Promise((r) => setTimeout(r, 300));
    const statuses = await loop.stop();
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(x.ads.connectedServer).toBeNull();
    expect(await metric(x.proxy, 'pillion_xds_connected')).toBe(0);
    expect(await ready(x.proxy)).toBe(200);
  });

  it('reconnects when it comes back and re-subscribes with the last ACKed versions and names', async () => {
    server = await startScriptedAds(server.port);
    const cds = await server.waitFor(is(CDS));
    expect(server.requests.indexOf(cds)).toBe(0);
    expect(cds.node?.id).toBe(NODE.id);
    // v2 was NACKed: the version the proxy has is still v1. Nonces belong to the old stream.
    expect(cds.version_info).toBe('v1');
    expect(cds.response_nonce ?? '').toBe('');
    const eds = await server.waitFor(is(EDS));
    expect(eds.version_info).toBe('v1');
    expect(eds.resource_names).toEqual(['backend.default:8080', 'frontend.default:8080']);
    expect((await server.waitFor(is(LDS))).version_info).toBe('v1');
    const rds = await server.waitFor(is(RDS));
    expect(rds.version_info).toBe('v1');
    expect(rds.resource_names).toEqual(['outbound']);

    // The new server pushes a new service: new cluster → new EDS name → the route to it is served.
    const next = compile(meshYaml(backend.port, { extraPort: extra.port }));
    server.send(CDS, 'v3', 'c3', next.clusters);
    const eds3 = await server.waitFor((r) => is(EDS)(r) && (r.resource_names ?? []).includes('extra.default:8080'));
    expect(eds3.version_info).toBe('v1');
    server.send(EDS, 'v3', 'e3', next.endpoints.filter((e) => e.name === 'extra.default:8080'));
    await server.waitFor(is(EDS, 'e3'));
    server.send(RDS, 'v3', 'r3', next.routes);
    expect((await server.waitFor(is(RDS, 'r3'))).version_info).toBe('v3');
    const reply = await request(outboundPort(x.proxy), { host: 'extra', path: '/new' });
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).name).toBe('extra');
    expect((await request(outboundPort(x.proxy), { host: 'backend' })).status).toBe(200);
    expect(x.ads.connectedServer).toBe(server.address);
  });
});

describe('ADS client with several servers', () => {
  it('--xds a,b with a down: connects to b and warms from it', async () => {
    const backend = await startHttpBackend('backend');
    const live = await startScriptedAds();
    const down = `127.0.0.1:${await deadPort()}`;
    const x = await startXdsProxy([down, live.address]);
    try {
      const cds = await live.waitFor(is(CDS));
      expect(cds.node?.id).toBe(NODE.id);
      const res = compile(meshYaml(backend.port));
      live.send(CDS, 'v1', 'c1', res.clusters);
      live.send(LDS, 'v1', 'l1', res.listeners);
      await live.waitFor(is(EDS));
      await live.waitFor(is(RDS));
      live.send(EDS, 'v1', 'e1', res.endpoints);
      live.send(RDS, 'v1', 'r1', res.routes);
      await live.waitFor(is(RDS, 'r1'));
      await x.ads.whenWarm();
      expect(x.ads.connectedServer).toBe(live.address);
      expect(await ready(x.proxy)).toBe(200);
      expect((await request(outboundPort(x.proxy), { host: 'backend' })).status).toBe(200);
    } finally {
      await x.close();
      await live.close();
      await backend.close();
    }
  });

  it('stop() ends the stream and the reconnect timer: no request reaches a server started afterwards', async () => {
    const port = await deadPort();
    const x = await startXdsProxy([`127.0.0.1:${port}`]);
    await new Promise((r) => setTimeout(r, 100));
    await x.close();
    const late = await startScriptedAds(port);
    try {
      await new Promise((r) => setTimeout(r, 400));
      expect(late.streams()).toBe(0);
    } finally {
      await late.close();
    }
  });
});
