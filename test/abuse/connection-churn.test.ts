// Connections that come and go must leave nothing behind: each closed HTTP/1 connection (downstream or upstream,
// finished or aborted by the client) once kept its parser, connection object and socket alive for good (~3.8 KB
// each: an app opening 100 connections a second grew the sidecar by ~1.3 GB an hour). Measured as a user
// would: live heap after a full GC, before and after thousands of connections.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as net from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let backend: Backend;
let proxy: RunningProxy;
let port: number;

beforeAll(async () => {
  backend = await startHttpBackend('churn', (req, res) => {
    // Every other upstream connection is closed by the backend, so upstream connections churn too.
    if (req.url === '/close-upstream') res.setHeader('connection', 'close');
    if (req.url === '/slow') {
      setTimeout(() => res.end('late'), 200);
      return;
    }
    res.end('ok');
  });
  proxy = await startProxy(
    `services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: churn
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${backend.port} }]
`,
    { service: 'client', admin: false },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await backend.close();
});

/** One request on a fresh connection that asks to close after it. */
function oneShot(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = http.request({ port, host: '127.0.0.1', path, agent: false, headers: { host: 'churn', connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', resolve);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A request the client gives up on halfway: the connection is reset while the upstream is still working. */
function aborted(): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write('GET /slow HTTP/1.1\r\nhost: churn\r\n\r\n');
      setTimeout(() => {
        socket.resetAndDestroy();
        resolve();
      }, 5);
    });
    socket.on('error', () => resolve());
  });
}

async function churn(total: number, make: (i: number) => Promise<void>): Promise<void> {
  const parallel = 20;
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < total) await make(next++);
    }),
  );
}

async function liveHeapAfterGc(): Promise<number> {
  // Let closes, timers and the parsers' deferred frees run, then collect twice (weak callbacks need a second pass).
  await new Promise((r) => setTimeout(r, 400));
  gc();
  await new Promise((r) => setImmediate(r));
  gc();
  return process.memoryUsage().heapUsed;
}

describe('connection churn', () => {
  it('leaves no parser, connection or socket behind per closed connection', async () => {
    await churn(1500, (i) => oneShot(i % 2 === 0 ? '/' : '/close-upstream'));
    const before = await liveHeapAfterGc();
    await churn(3000, (i) => oneShot(i % 2 === 0 ? '/' : '/close-upstream'));
    const after = await liveHeapAfterGc();
    const perConnection = (after - before) / 3000;
    // Leaking, this was ~2–4 KB per connection; a few hundred bytes of noise is what a live heap varies by.
    expect(perConnection, `heap grew ${((after - before) / 1048576).toFixed(1)} MiB over 3000 connections`).toBeLessThan(500);
  });

  it('leaves nothing behind per connection the client resets mid-request', async () => {
    await churn(1000, () => aborted());
    const before = await liveHeapAfterGc();
    await churn(2000, () => aborted());
    const after = await liveHeapAfterGc();
    const perConnection = (after - before) / 2000;
    expect(perConnection, `heap grew ${((after - before) / 1048576).toFixed(1)} MiB over 2000 aborted connections`).toBeLessThan(500);
  });
});
