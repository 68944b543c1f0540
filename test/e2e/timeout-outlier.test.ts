// The route timeout and outlier detection with a slow client: a request whose client is still sending its body
// when the route timeout passes gets its 504, but the endpoint is not blamed (a slow or hostile uploader must not
// eject healthy endpoints); a timeout after the request arrived whole still counts. HTTP/1.1 and HTTP/2 clients.
import * as http from 'node:http';
import * as http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

const backends: Backend[] = [];
let proxy: RunningProxy;
let port: number;

beforeAll(async () => {
  // Answers as soon as the request body is in.
  const echo = await startHttpBackend('echo', (req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  // Reads the whole request and never answers.
  const mute = await startHttpBackend('mute', (req) => {
    req.resume();
  });
  backends.push(echo, mute);
  const od = 'outlierDetection: { consecutive5xx: 1, consecutiveGatewayFailure: 1, interval: 10s, baseEjectionTime: 30s }';
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: upload
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${echo.port} }]
    policy: { timeout: 300ms, ${od} }
  - name: mute
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${mute.port} }]
    policy: { timeout: 300ms, ${od} }
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await Promise.all(backends.map((b) => b.close()));
});

function ejection(service: string): string | null {
  return proxy.proxy.clusters().find((c) => c.name.startsWith(`${service}.`))!.endpoints[0]!.ejectionReason;
}

/** A POST over HTTP/1.1 whose body's second half comes after `gapMs`. */
function slowPost(host: string, gapMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', headers: { host }, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode!);
    });
    req.on('error', reject);
    req.write('first half');
    setTimeout(() => req.end('second half'), gapMs);
  });
}

/** The same over HTTP/2 (prior knowledge). */
function slowPostH2(host: string, gapMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const stream = session.request({ ':method': 'POST', ':path': '/', ':authority': host });
    stream.on('error', () => {});
    stream.on('response', (headers) => {
      resolve(Number(headers[':status']));
      session.destroy();
    });
    stream.write('first half');
    setTimeout(() => {
      if (!stream.destroyed) stream.end('second half');
    }, gapMs);
  });
}

describe('the route timeout while the client is still sending', () => {
  it('HTTP/1.1 and HTTP/2: 504, and the endpoint is not ejected for the client being slow', async () => {
    expect(await slowPost('upload', 600)).toBe(504);
    expect(await slowPostH2('upload', 600)).toBe(504);
    expect(ejection('upload')).toBeNull();
  });

  it('a timeout after the whole request arrived still counts: the mute endpoint is ejected', async () => {
    expect(await slowPost('mute', 0)).toBe(504);
    expect(ejection('mute')).toBe('consecutive_gateway_failure');
  });
});
