// An inbound-only drain (the preStop hook's, POST /drain?inboundonly) on a real proxy: inbound stops accepting,
// outbound keeps serving; a config change during it cannot reopen an inbound port, but may add outbound ones; the
// full drain (SIGTERM's) then closes outbound too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, deadPort, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { compileForNode } from '../../xds/compiler.js';

let app: Backend;
let proxy: RunningProxy;

function mesh(egressPort?: number): string {
  return `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${app.port} }]
${egressPort === undefined ? '' : `    egress: [{ localPort: ${egressPort}, service: web, port: 8080 }]`}
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${app.port} }]
`;
}

beforeAll(async () => {
  app = await startHttpBackend('app');
  proxy = await startProxy(mesh(), { service: 'client', appPort: app.port, inboundPort: await deadPort() });
});

afterAll(async () => {
  await proxy.close();
  await app.close();
});

describe('inbound-only drain', () => {
  it('refuses inbound, keeps outbound, survives a config change, and the full drain then closes outbound', async () => {
    const inbound = proxy.port('inbound');
    const outbound = proxy.port('outbound');
    expect((await request(inbound, { host: 'client' })).status).toBe(200);

    await proxy.proxy.drain({ inboundOnly: true });
    await expect(request(inbound, { host: 'client' })).rejects.toThrow(/ECONNREFUSED/);
    expect((await request(outbound, { host: 'web' })).status).toBe(200);

    // xDS keeps running during an inbound-only drain: a new inbound port stays closed, a new egress port opens.
    const [inbound2, egress] = [await deadPort(), await deadPort()];
    const resources = compileForNode(parseMeshConfig(mesh(egress)), {
      id: 'test~client', service: 'client', namespace: 'default', serviceAccount: 'client',
      appPort: app.port, inboundPort: inbound2, outboundPort: 0,
    });
    expect((await proxy.proxy.apply(resources, 'v2')).errors).toEqual([]);
    await expect(request(inbound2, { host: 'client' })).rejects.toThrow(/ECONNREFUSED/);
    expect((await request(egress, {})).status).toBe(200);
    expect((await request(outbound, { host: 'web' })).status).toBe(200);

    await proxy.proxy.drain();
    await expect(request(outbound, { host: 'web' })).rejects.toThrow(/ECONNREFUSED/);
    await expect(request(egress, {})).rejects.toThrow(/ECONNREFUSED/);
  });
});
