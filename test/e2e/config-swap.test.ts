// Applying new config never drops a request in flight: requests keep the cluster they started with, a
// changed cluster keeps the state of endpoints that remain, and a removed listener drains its connections.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { startHttpBackend, deadPort, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { compileForNode } from '../../xds/compiler.js';

let a: Backend;
let b: Backend;
let proxy: RunningProxy;
let egressPort: number;

function mesh(endpoints: Backend[], withEgress: boolean): string {
  return `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
${withEgress ? `    egress: [{ localPort: ${egressPort}, service: slow, port: 8080 }]` : ''}
  - name: slow
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${endpoints.map((e) => `{ address: 127.0.0.1, port: ${e.port} }`).join(', ')}]
`;
}

async function apply(yaml: string, version: string): Promise<void> {
  const resources = compileForNode(parseMeshConfig(yaml), {
    id: 'test~client',
    service: 'client',
    namespace: 'default',
    serviceAccount: 'client',
    inboundPort: 0,
    outboundPort: 0,
  });
  const result = await proxy.proxy.apply(resources, version);
  expect(result.errors).toEqual([]);
}

beforeAll(async () => {
  const slowly = (name: string) =>
    startHttpBackend(name, (_req, res) => {
      setTimeout(() => res.end(name), 300);
    });
  a = await slowly('a');
  b = await slowly('b');
  egressPort = await deadPort();
  proxy = await startProxy(mesh([a], true), { service: 'client' });
});

afterAll(async () => {
  await proxy.close();
  await a.close();
  await b.close();
});

describe('config swaps', () => {
  it('requests in flight finish on the old endpoints; new ones use the new set; remaining endpoints keep their state', async () => {
    const port = proxy.port('outbound');
    const inFlight = Array.from({ length: 4 }, () => request(port, { host: 'slow' }));
    await new Promise((r) => setTimeout(r, 100));
    // a stays, b is added, while four requests to a are in flight.
    await apply(mesh([a, b], true), 'v2');
    const endpointA = proxy.proxy.clusters().find((c) => c.name === 'slow.default:8080')!.endpoints.find((e) => e.port === a.port)!;
    expect(endpointA.activeRequests).toBe(4);
    // a is removed: the four requests still complete.
    await apply(mesh([b], true), 'v3');
    const replies = await Promise.all(inFlight);
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(replies.map((r) => r.body)).toEqual(['a', 'a', 'a', 'a']);
    const after = await request(port, { host: 'slow' });
    expect(after.body).toBe('b');
  });

  it('a removed listener stops accepting but lets its connection finish', async () => {
    await apply(mesh([b], true), 'v4');
    const inFlight = request(egressPort, { host: 'slow' });
    await new Promise((r) => setTimeout(r, 100));
    await apply(mesh([b], false), 'v5');
    expect(proxy.proxy.listeners().map((l) => l.name)).not.toContain(`outbound:${egressPort}`);
    const reply = await inFlight;
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('b');
    const refused = await new Promise<boolean>((resolve) => {
      const s = net.connect(egressPort, '127.0.0.1');
      s.on('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', () => resolve(true));
    });
    expect(refused).toBe(true);
  });
});
