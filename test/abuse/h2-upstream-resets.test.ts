// Cancels spread over many downstream connections meet on one upstream HTTP/2 connection. Passed on one for one,
// 10 clients × 400 cancels (each under the proxy's per-connection rapid-reset limit) made a stock Node upstream
// (nghttp2's reset flood guard: 1000 burst, 33/s) send GOAWAY, and a well-behaved client's requests on that
// connection all failed with 503 upstream_reset. The upstream here is that stock server, unmodified.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { h2request } from '../helpers/client.js';

let upstream: http2.Http2Server;
let upstreamSessions: http2.ServerHttp2Session[] = [];
let proxy: RunningProxy;
let port: number;

beforeAll(async () => {
  upstream = http2.createServer();
  upstream.on('session', (session) => {
    upstreamSessions.push(session);
    session.on('error', () => {});
  });
  upstream.on('stream', (stream) => {
    stream.on('error', () => {});
    const timer = setTimeout(() => {
      if (stream.destroyed) return;
      stream.respond({ ':status': 200 });
      stream.end('ok');
    }, 40);
    stream.on('close', () => clearTimeout(timer));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const upstreamPort = (upstream.address() as AddressInfo).port;
  proxy = await startProxy(
    `services:
  - name: client
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: h2
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${upstreamPort} }]
`,
    { service: 'client', admin: false },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  for (const session of upstreamSessions) session.destroy();
  await new Promise<void>((r) => upstream.close(() => r()));
});

/** One client connection that opens `count` streams and cancels each ~5 ms after opening it. */
async function cancellingClient(count: number): Promise<void> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  let opened = 0;
  await new Promise<void>((resolve) => {
    const openOne = (): void => {
      if (opened >= count || session.destroyed) {
        resolve();
        return;
      }
      opened++;
      const stream = session.request({ ':path': '/cancel', ':authority': 'h2' });
      stream.on('error', () => {});
      setTimeout(() => stream.close(http2.constants.NGHTTP2_CANCEL), 5);
      // Paced so each connection stays under the proxy's own per-connection reset flood guard.
      setTimeout(openOne, opened % 20 === 0 ? 10 : 0);
    };
    openOne();
  });
  await new Promise((r) => setTimeout(r, 50));
  session.destroy();
}

describe('client cancels on many connections', () => {
  it('do not cost a well-behaved client its requests on the shared upstream connection', async () => {
    const good = http2.connect(`http://127.0.0.1:${port}`);
    good.on('error', () => {});
    const statuses: number[] = [];
    let stop = false;
    const wellBehaved = (async () => {
      while (!stop) {
        try {
          const r = await h2request(good, { ':path': '/good', ':authority': 'h2' });
          statuses.push(Number(r.headers[':status']));
        } catch {
          statuses.push(0);
        }
      }
    })();
    await Promise.all(Array.from({ length: 10 }, () => cancellingClient(400)));
    stop = true;
    await wellBehaved;
    good.close();
    const failed = statuses.filter((s) => s !== 200).length;
    expect(statuses.length).toBeGreaterThan(5);
    expect(failed, `${failed} of ${statuses.length} well-behaved requests failed`).toBe(0);
  });
});
