// An idle connection between two sidecars outlives the pool's 4 s default: the inbound listener says how long it
// keeps an idle connection (`keep-alive: timeout=3600`, Envoy's 1 h), the client sidecar's pool keeps its
// connection that long (at most 10 minutes), and a pause in traffic does not cost a new (mTLS) handshake. The hint
// is hop-by-hop: the app behind the client sidecar never sees it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

let app: Backend;
let server: RunningProxy;
let client: RunningProxy;
let inbound: number;

beforeAll(async () => {
  app = await startHttpBackend('web');
  inbound = await freePort();
  const mesh = `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: web
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${inbound} }]
`;
  server = await startProxy(mesh, { service: 'web', appPort: app.port, inboundPort: inbound });
  client = await startProxy(mesh, { service: 'client' });
});

afterAll(async () => {
  await client.close();
  await server.close();
  await app.close();
});

/** Connections the server sidecar's inbound listener has accepted so far. */
async function accepted(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${server.adminPort}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('pillion_downstream_connections_transport_total{') && line.includes('listener="inbound"')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('idle connections between sidecars', () => {
  it('the inbound listener tells its idle timeout; the app behind the client sidecar does not see the hint', async () => {
    // A keep-alive request (agent: false alone asks for close, which gets no hint).
    const direct = await request(inbound, { path: '/', headers: { host: 'web:8080', connection: 'keep-alive' } });
    expect(direct.status).toBe(200);
    expect(direct.headers['keep-alive']).toBe('timeout=3600');
    const proxied = await request(client.port('outbound'), { path: '/', headers: { host: 'web:8080' } });
    expect(proxied.status).toBe(200);
    expect(proxied.headers['keep-alive']).toBeUndefined();
  });

  it('the client sidecar reuses its connection to the peer after an idle pause longer than its 4 s default', async () => {
    const port = client.port('outbound');
    expect((await request(port, { path: '/first', headers: { host: 'web:8080' } })).status).toBe(200);
    const before = await accepted();
    // Non-zero, or a renamed metric (read as 0 both times) would pass the comparison below.
    expect(before, 'the server sidecar counted the first connection').toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 4_600));
    expect((await request(port, { path: '/second', headers: { host: 'web:8080' } })).status).toBe(200);
    expect(await accepted(), 'the server sidecar accepted a new connection after the pause').toBe(before);
  }, 15_000);
});
