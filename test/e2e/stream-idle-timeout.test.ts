// The stream idle timeout (HCM stream_idle_timeout; a route's idle_timeout over it): a stream on which nothing
// moves for that long ends (408 before the response, a cut response after), one that keeps moving does not.
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

let backend: Backend;
let proxy: RunningProxy;
let port: number;

beforeAll(async () => {
  backend = await startHttpBackend('b', (req, res) => {
    if (req.url === '/silent') return; // never answers
    res.writeHead(200, { 'content-type': 'text/plain' });
    if (req.url === '/stall') {
      res.write('first');
      return; // then nothing more
    }
    // /trickle: a chunk every 100 ms for 1 s, longer than the idle timeout but never idle that long.
    let n = 0;
    const t = setInterval(() => {
      res.write(`${n}\n`);
      if (++n === 10) {
        clearInterval(t);
        res.end();
      }
    }, 100);
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
    policy: { timeout: 10s }
`,
    { service: 'client', hcm: { stream_idle_timeout: { nanos: 300_000_000 } } },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await backend.close();
});

describe('stream idle timeout', () => {
  it('answers 408 stream_idle_timeout when the upstream says nothing for that long', async () => {
    const r = await request(port, { host: 'b', path: '/silent' });
    expect(r.status).toBe(408);
    expect(r.headers['x-pillion-reason']).toBe('stream_idle_timeout');
  });

  it('cuts a response that stalls after it started (the client sees it broken, not complete)', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/stall', headers: { host: 'b' }, agent: false }, (res) => {
        res.on('data', () => {});
        res.on('end', () => resolve('complete'));
        res.on('error', () => resolve('broken'));
        res.on('aborted', () => resolve('broken'));
      });
      req.on('error', () => resolve('broken'));
      req.end();
    });
    expect(outcome).toBe('broken');
  });

  it('lets a stream that keeps moving run longer than the idle timeout', async () => {
    const r = await request(port, { host: 'b', path: '/trickle' });
    expect(r.status).toBe(200);
    expect(r.body.split('\n').filter(Boolean)).toHaveLength(10);
  });
});
