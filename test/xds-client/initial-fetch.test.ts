// Envoy's initial_fetch_timeout: a control server that names a route table in a Listener but never sends it
// must not keep the proxy unready forever. After the timeout the proxy is ready and answers no_route.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TYPE_URLS } from '../../src/config/protos.js';
import { startXdsProxy, type XdsProxy } from './xds-proxy.js';
import { request } from '../helpers/client.js';
import { compile, meshYaml } from './fixtures.js';
import { startScriptedAds, type ScriptedAds, type WireRequest } from './scripted-ads.js';

const is = (type: string, nonce: string) => (r: WireRequest) => r.type_url === type && (r.response_nonce ?? '') === nonce;

describe('initial fetch timeout', () => {
  let server: ScriptedAds;
  let x: XdsProxy;

  beforeAll(async () => {
    server = await startScriptedAds();
    x = await startXdsProxy([server.address], { initialFetchTimeoutMs: 1_000 });
  });

  afterAll(async () => {
    await x?.close();
    await server?.close();
  });

  it('stays unready while the route table is missing, then turns ready after the timeout', async () => {
    const res = compile(meshYaml(1));
    await server.waitFor((r) => r.type_url === TYPE_URLS.Listener);
    server.send(TYPE_URLS.Cluster, 'v1', 'c1', res.clusters);
    await server.waitFor(is(TYPE_URLS.Cluster, 'c1'));
    server.send(TYPE_URLS.ClusterLoadAssignment, 'v1', 'e1', res.endpoints);
    await server.waitFor(is(TYPE_URLS.ClusterLoadAssignment, 'e1'));
    server.send(TYPE_URLS.Listener, 'v1', 'l1', res.listeners);
    await server.waitFor(is(TYPE_URLS.Listener, 'l1'));
    // The RouteConfiguration "outbound" is never sent.
    expect((await request(x.proxy.adminPort, { path: '/ready' })).status).toBe(503);
    await x.ads.whenWarm();
    expect((await request(x.proxy.adminPort, { path: '/ready' })).status).toBe(200);
    const port = x.proxy.listeners().find((l) => l.name === 'outbound')!.port;
    const reply = await request(port, { host: 'backend' });
    expect(reply.status).toBe(404);
    expect(reply.headers['x-pillion-reason']).toBe('no_route');
  });
});
