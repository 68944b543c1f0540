// The route timeout and outlier detection with a slow client. The route timeout starts at the request's last byte,
// as Envoy's: an upload that takes longer than it completes, and the endpoint is not blamed for the client being
// slow (a slow or hostile uploader must not eject healthy endpoints); a timeout after the request arrived whole
// is a 504 and counts. A client that stops sending mid-body is ended by the stream idle timeout. HTTP/1.1 and
// HTTP/2 clients.
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
  - name: idle
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${echo.port} }]
    policy: { timeout: 300ms }
`,
    { service: 'client', hcm: { stream_idle_timeout: { nanos: 800_000_000 } } },
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
  it('HTTP/1.1 and HTTP/2: an upload longer than the route timeout completes (200), and the endpoint is not ejected', async () => {
    expect(await slowPost('upload', 600)).toBe(200);
    expect(await slowPostH2('upload', 600)).toBe(200);
    expect(ejection('upload')).toBeNull();
  });

  it('a client that stops sending mid-body: the stream idle timeout ends it (408), never a hang', async () => {
    // The second half comes only long after the idle timeout.
    const started = Date.now();
    expect(await slowPost('idle', 3_000)).toBe(408);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('a timeout after the whole request arrived still counts: the mute endpoint is ejected', async () => {
    expect(await slowPost('mute', 0)).toBe(504);
    expect(ejection('mute')).toBe('consecutive_gateway_failure');
  });
});
