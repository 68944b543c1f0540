// HCM request_timeout (HTTP/1.1's 408 is in http1-codec.test.ts): as Envoy arms it, from the request head
// until the request's last byte or the response's start. A body that does not arrive in time gets 408 (gRPC:
// grpc-status 4 DEADLINE_EXCEEDED), a body that arrives in time passes, and a response already under way is not cut.
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

let backend: Backend;
let proxy: RunningProxy;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  backend = await startHttpBackend('b', (req, res) => {
    if (req.url === '/early') {
      // Answers at once and streams the request body back as it comes: the response starts before the request ends.
      res.writeHead(200, { 'content-type': 'text/plain' });
      req.pipe(res);
      return;
    }
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => res.end(`got ${bytes}`));
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
    { service: 'client', hcm: { request_timeout: { nanos: 300_000_000 } } },
  );
  session = http2.connect(`http://127.0.0.1:${proxy.port('outbound')}`);
  session.on('error', () => {});
});

afterAll(async () => {
  session?.close();
  await proxy.close();
  await backend.close();
});

interface Outcome {
  status: number;
  reason: string | undefined;
  grpcStatus: string | undefined;
  body: string;
  ms: number;
}

/** Sends `chunks` of the body `gapMs` apart, then ends the request unless `end` is false. */
function post(path: string, chunks: number, gapMs: number, end: boolean, extra: http2.OutgoingHttpHeaders = {}): Promise<Outcome> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': path, ':authority': 'b', ...extra });
    let status = 0;
    let reason: string | undefined;
    let grpcStatus: string | undefined;
    let body = '';
    stream.on('response', (h) => {
      status = Number(h[':status']);
      reason = h['x-pillion-reason'] as string | undefined;
      grpcStatus = h['grpc-status'] as string | undefined;
    });
    stream.on('trailers', (t) => (grpcStatus ??= t['grpc-status'] as string | undefined));
    stream.setEncoding('utf8');
    stream.on('data', (d: string) => (body += d));
    stream.on('close', () => resolve({ status, reason, grpcStatus, body, ms: Date.now() - started }));
    stream.on('error', reject);
    let sent = 0;
    const next = (): void => {
      if (stream.closed) return;
      if (sent === chunks) {
        if (end) stream.end();
        return;
      }
      sent++;
      stream.write('x'.repeat(100));
      setTimeout(next, gapMs);
    };
    next();
  });
}

describe('request_timeout over HTTP/2', () => {
  it('a body that stops coming: 408 request_timeout, after the timeout and not long after', async () => {
    const hits = backend.hits;
    const r = await post('/slow', 1, 0, false);
    expect(r.status).toBe(408);
    expect(r.reason).toBe('request_timeout');
    expect(r.ms).toBeGreaterThanOrEqual(250);
    expect(r.ms).toBeLessThan(5_000);
    // The upstream request was begun with the head, then cancelled: never a complete request.
    expect(backend.hits - hits).toBeLessThanOrEqual(1);
  });

  it('gRPC: a request stream that does not end in time gets grpc-status 4 (DEADLINE_EXCEEDED)', async () => {
    const r = await post('/pkg.Svc/Upload', 1, 0, false, { 'content-type': 'application/grpc', te: 'trailers' });
    expect(r.status).toBe(200);
    expect(r.grpcStatus).toBe('4');
    // Not the route's 10 s timeout, which would also say 4.
    expect(r.reason).toBe('request_timeout');
    expect(r.ms).toBeLessThan(5_000);
  });

  it('a body that keeps coming and ends in time passes', async () => {
    const r = await post('/ok', 3, 50, true);
    expect(r.status).toBe(200);
    expect(r.body).toBe('got 300');
  });

  it('a response already under way is not cut when the request body outlasts the timeout', async () => {
    // 8 chunks 100 ms apart: the upload takes ~800 ms, well past the 300 ms timeout, after the response began.
    const r = await post('/early', 8, 100, true);
    expect(r.status).toBe(200);
    expect(r.body).toBe('x'.repeat(800));
  });
});

describe('request_timeout over HTTP/1.1', () => {
  it('a response already under way is not cut when the request body outlasts the timeout', async () => {
    const text = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(proxy.port('outbound'), '127.0.0.1');
      let data = '';
      socket.on('error', reject);
      socket.on('data', (d) => (data += d.toString('latin1')));
      socket.on('end', () => resolve(data));
      socket.write('POST /early HTTP/1.1\r\nhost: b\r\ncontent-length: 800\r\nconnection: close\r\n\r\n');
      let sent = 0;
      const next = (): void => {
        if (socket.destroyed) return;
        socket.write('x'.repeat(100));
        if (++sent < 8) setTimeout(next, 100);
      };
      next();
    });
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    // Chunked framing around the echoed bytes: count the x's.
    expect(text.split('\r\n\r\n').slice(1).join('').replace(/[^x]/g, '')).toHaveLength(800);
    expect(text).toMatch(/\r\n0\r\n\r\n$/);
  });
});
