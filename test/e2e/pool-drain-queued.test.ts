// A config change that drains an endpoint's connection pool (its connection shape changed, or the endpoint left)
// while requests wait in that pool's queue for a connection: the queued requests are still sent, over HTTP/1.1
// and HTTP/2, instead of waiting for the route timeout (or for ever on a route without one). And maxConnections 0
// still lets an endpoint have one connection, as Envoy does, rather than queueing every request.
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';
import { parseMeshConfig } from '../../xds/mesh-config.js';
import { compileForNode } from '../../xds/compiler.js';

let proxy: RunningProxy;
let closer: Backend;
let narrow: http2.Http2Server;
let narrowPort = 0;

function mesh(h1MaxConnections: number, h2MaxConnections: number): string {
  return `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: closer
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${closer.port} }]
    policy: { timeout: 3s, circuitBreakers: { maxConnections: ${h1MaxConnections} } }
  - name: narrow
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${narrowPort} }]
    policy: { timeout: 3s, circuitBreakers: { maxConnections: ${h2MaxConnections} } }
  - name: zero-h1
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${closer.port} }]
    policy: { timeout: 3s, circuitBreakers: { maxConnections: 0 } }
  - name: zero-h2
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${narrowPort} }]
    policy: { timeout: 3s, circuitBreakers: { maxConnections: 0 } }
`;
}

async function apply(h1MaxConnections: number, h2MaxConnections: number, version: string): Promise<void> {
  const resources = compileForNode(parseMeshConfig(mesh(h1MaxConnections, h2MaxConnections)), {
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
  // Answers after 300 ms and closes each connection (Connection: close), so no connection returns to the pool.
  closer = await startHttpBackend('closer', (_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { connection: 'close' });
      res.end('closer');
    }, 300);
  });
  // One stream per connection, answered after 300 ms: a second request waits for stream capacity.
  narrow = http2.createServer({ settings: { maxConcurrentStreams: 1 } });
  narrow.on('error', () => {});
  narrow.on('session', (s) => s.on('error', () => {}));
  narrow.on('stream', (stream) => {
    stream.on('error', () => {});
    setTimeout(() => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200 });
      stream.end('narrow');
    }, 300);
  });
  await new Promise<void>((r) => narrow.listen(0, '127.0.0.1', () => r()));
  narrowPort = (narrow.address() as AddressInfo).port;
  proxy = await startProxy(mesh(1, 1), { service: 'client' });
});

afterAll(async () => {
  await proxy.close();
  await closer.close();
  await new Promise<void>((r) => narrow.close(() => r()));
});

describe('requests queued in a pool that a config change drains', () => {
  it.each([
    // Only the cluster under test changes shape (1 → 2 connections); the other keeps its pool.
    ['HTTP/1.1', 'closer', [2, 1], 'v2'],
    ['HTTP/2', 'narrow', [2, 2], 'v3'],
  ])('%s: the queued request is sent and answered, not left to the route timeout', async (_name, host, maxConnections, version) => {
    const port = proxy.port('outbound');
    const first = request(port, { host });
    await new Promise((r) => setTimeout(r, 80));
    // maxConnections 1 and the one connection busy: this one waits in the pool's queue.
    const queued = request(port, { host });
    await new Promise((r) => setTimeout(r, 80));
    // A new connection shape: the pool with the queued request is drained and replaced.
    await apply((maxConnections as number[])[0]!, (maxConnections as number[])[1]!, version as string);
    const started = Date.now();
    expect((await first).status).toBe(200);
    const reply = await queued;
    expect(reply.headers['x-pillion-reason']).toBeUndefined();
    expect(reply.status).toBe(200);
    expect(reply.body).toBe(host);
    // Answered after the first (≈300 ms) plus its own 300 ms, well inside the 3 s route timeout.
    expect(Date.now() - started).toBeLessThan(2000);
  });
});

describe('maxConnections 0', () => {
  it.each([
    ['HTTP/1.1', 'zero-h1', 'closer'],
    ['HTTP/2', 'zero-h2', 'narrow'],
  ])('%s: the endpoint still gets one connection and the requests are answered', async (_name, host, body) => {
    const port = proxy.port('outbound');
    const started = Date.now();
    const first = request(port, { host });
    // The second once the connection is up (over HTTP/2, once the peer's SETTINGS say one stream at a time).
    await new Promise((r) => setTimeout(r, 80));
    const replies = await Promise.all([first, request(port, { host })]);
    expect(replies.map((r) => [r.status, r.headers['x-pillion-reason'] ?? r.body])).toEqual([
      [200, body],
      [200, body],
    ]);
    // One after the other on the one connection (300 ms each), well inside the 3 s route timeout.
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
