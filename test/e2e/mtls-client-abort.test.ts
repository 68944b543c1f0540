// A client that goes away mid-request does not cost the mTLS hop a new connection: the client sidecar reads the
// cancelled request's response to its end (bounded: ABORT_DISCARD_MS, ABORT_DISCARD_MAX_BYTES), drops it, and
// the next request goes out on the same connection, with no new handshake. Before, each request in flight when
// a load balancer or a batch of clients dropped its connections closed one connection to the peer sidecar.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import type { RunningProxy } from '../helpers/proxy.js';
import { metricValue, startSidecarPair } from '../tls/mesh-proxy.js';
import { TestCa } from '../tls/test-ca.js';

let ca: TestCa;
let app: Backend;
let server: RunningProxy;
let client: RunningProxy;
const seen: string[] = [];

beforeAll(async () => {
  ca = new TestCa();
  app = await startHttpBackend('app', (req, res) => {
    seen.push(req.url ?? '');
    const answer = (): void => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    };
    if (req.url === '/slow') setTimeout(answer, 200);
    else answer();
  });
  ({ server, client } = await startSidecarPair(ca, app.port));
}, 30_000);

afterAll(async () => {
  await Promise.all([client?.close(), server?.close()]);
  await app?.close();
  ca?.close();
});

const handshakes = async (): Promise<number> =>
  (await metricValue(client.proxy, 'pillion_upstream_tls_handshakes_total', { session: 'full' })) +
  (await metricValue(client.proxy, 'pillion_upstream_tls_handshakes_total', { session: 'resumed' }));

/** Sends a request on a raw connection to the client sidecar and drops the connection after `ms`. */
function requestAndVanish(port: number, path: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port }, () => sock.write(`GET ${path} HTTP/1.1\r\nhost: backend:8080\r\n\r\n`));
    sock.on('error', reject);
    sock.on('data', () => reject(new Error('the response came before the client went away')));
    setTimeout(() => {
      sock.destroy();
      resolve();
    }, ms);
  });
}

describe('a client that goes away mid-request over mTLS', () => {
  it('leaves the connection between the sidecars open: the next request needs no new handshake', async () => {
    const port = client.port('outbound');
    expect((await request(port, { host: 'backend:8080', path: '/warm' })).status).toBe(200);
    const before = await handshakes();
    // Non-zero, or a renamed metric (read as 0 both times) would pass the comparison below.
    expect(before, 'the client sidecar counted its first handshake').toBeGreaterThan(0);
    await requestAndVanish(port, '/slow', 60);
    await new Promise((r) => setTimeout(r, 400)); // the app answers /slow at 200 ms
    expect((await request(port, { host: 'backend:8080', path: '/after' })).status).toBe(200);
    expect(seen).toEqual(['/warm', '/slow', '/after']);
    expect(await handshakes(), 'handshakes of the client sidecar after the client went away').toBe(before);
  }, 15_000);
});
