// Metrics true at every scrape: a keep-alive connection's bytes show while it is open (before, they were added
// only when it closed), closing it later adds only what was not counted yet; upstream request times per cluster.
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

let backend: Backend;
let proxy: RunningProxy;

beforeAll(async () => {
  backend = await startHttpBackend('b', (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('x'.repeat(1024));
  });
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: b
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]
`,
    { service: 'client' },
  );
});

afterAll(async () => {
  await proxy.close();
  await backend.close();
});

async function bytes(): Promise<{ sent: number; received: number }> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  const read = (name: string): number => Number(new RegExp(`^${name}\\{listener="outbound"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  return { sent: read('pillion_downstream_bytes_sent_total'), received: read('pillion_downstream_bytes_received_total') };
}

describe('downstream byte counters', () => {
  it('move while a keep-alive connection is open, and are not counted twice when it closes', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const before = await bytes();
    for (let i = 0; i < 20; i++) expect((await request(proxy.port('outbound'), { host: 'b', agent })).status).toBe(200);
    const open = await bytes();
    // 20 responses of 1 KiB (plus heads) went out on the one connection, which is still open.
    expect(open.sent - before.sent).toBeGreaterThanOrEqual(20 * 1024);
    expect(open.received - before.received).toBeGreaterThan(20 * 30);
    // And each upstream attempt's time is in the cluster's histogram (Envoy's upstream_rq_time).
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    expect(Number(/^pillion_upstream_request_duration_seconds_count\{cluster="b\.default:8080"\} (\d+)$/m.exec(metrics)?.[1])).toBe(20);
    agent.destroy();
    await new Promise((r) => setTimeout(r, 100));
    const closed = await bytes();
    // Nothing moved after the scrape: the close adds (nearly) nothing, not the connection's bytes again.
    expect(closed.sent - open.sent).toBeLessThan(1024);
    expect(closed.received - open.received).toBeLessThan(1024);
  });
});
