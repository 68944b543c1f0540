import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { TrafficGenerator } from './demo-traffic.js';

let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

describe('TrafficGenerator', () => {
  it('counts a response cut off mid-body as an error, so nothing stays in flight', async () => {
    // Headers promise 1000 bytes; 10 are sent, then the connection is dropped (a sidecar killed mid-response).
    server = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write('x'.repeat(10), () => setTimeout(() => res.socket?.destroy(), 20));
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const { port } = server.address() as AddressInfo;
    const gen = new TrafficGenerator(port, 'frontend', 40);
    gen.start();
    await new Promise((r) => setTimeout(r, 400));
    const started = Date.now();
    await gen.stop();
    const t = gen.total;
    expect(t.sent).toBeGreaterThan(0);
    expect(t.errors).toBe(t.sent);
    expect(t.ok + t.failed + t.errors).toBe(t.sent);
    // stop() waits for in-flight requests (up to 3 s): none are left hanging.
    expect(Date.now() - started).toBeLessThan(1500);
  });
});
