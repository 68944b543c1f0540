// HTTP/2 prior knowledge and gRPC (unary and bidirectional streaming) through the outbound listener.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http2 from 'node:http2';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startH2Backend, startHttpBackend, type Backend } from '../helpers/backends.js';
import { startEchoServer, echoClient, grpc, type EchoServer } from '../helpers/grpc.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { h2request, request } from '../helpers/client.js';
import { eventually, headerBlock, headersFrames, RawH2Client } from '../abuse/util.js';

let h2backend: Backend;
let h1backend: Backend;
let echo: EchoServer;
let proxy: RunningProxy;
let port: number;
let tmp: string;

/** Runs a client tool to completion (bounded), resolving with its stdout. */
function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} failed: ${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
}

const sha256 = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  h2backend = await startH2Backend('h2');
  h1backend = await startHttpBackend('h1');
  echo = await startEchoServer('echo');
  tmp = mkdtempSync(join(tmpdir(), 'pillion-h2-'));
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: h2svc
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${h2backend.port} }]
  - name: h1svc
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${h1backend.port} }]
  - name: greeter
    ports: [{ port: 50051, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: ${echo.port} }]
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  rmSync(tmp, { recursive: true, force: true });
  // The gRPC server first, while the proxy's upstream sessions are alive to take its GOAWAY, and bounded (1 s,
  // then forceShutdown): after the proxy's close it raced the sessions that close destroyed and could wait for
  // ever. Then the proxy (its streams go with it), then the other backends.
  await echo.close();
  await proxy.close();
  await h2backend.close();
  await h1backend.close();
}, 15_000);

describe('HTTP/2', () => {
  it('multiplexes concurrent streams on one connection to an HTTP/2 upstream', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) => h2request(session, { ':path': `/s/${i}`, ':authority': 'h2svc' })),
      );
      replies.forEach((r, i) => {
        expect(r.headers[':status']).toBe(200);
        expect(JSON.parse(r.body).path).toBe(`/s/${i}`);
      });
    } finally {
      session.close();
    }
  });

  it('carries a request body to the upstream', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const r = await h2request(session, { ':path': '/post', ':method': 'POST', ':authority': 'h2svc' }, 'payload');
      expect(JSON.parse(r.body).body).toBe('payload');
    } finally {
      session.close();
    }
  });

  it('translates an HTTP/2 client to an HTTP/1.1 upstream', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const r = await h2request(session, { ':path': '/down', ':authority': 'h1svc' });
      expect(r.headers[':status']).toBe(200);
      expect(JSON.parse(r.body).headers.host).toBe('h1svc');
    } finally {
      session.close();
    }
  });

  it('carries an HTTP/2 request body to an HTTP/1.1 upstream', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const r = await h2request(session, { ':path': '/up', ':method': 'POST', ':authority': 'h1svc' }, 'h2 body to h1');
      expect(r.headers[':status']).toBe(200);
      expect(JSON.parse(r.body).body).toBe('h2 body to h1');
    } finally {
      session.close();
    }
  });

  it('carries an HTTP/1.1 request body to an HTTP/2 upstream', async () => {
    const r = await request(port, { host: 'h2svc', path: '/from-h1', method: 'POST', body: 'h1 body to h2' });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ path: '/from-h1', body: 'h1 body to h2' });
  });

  it('answers 404 no_route with the reason header over HTTP/2', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const r = await h2request(session, { ':path': '/', ':authority': 'unknown' });
      expect(r.headers[':status']).toBe(404);
      expect(r.headers['x-pillion-reason']).toBe('no_route');
    } finally {
      session.close();
    }
  });
});

describe('HTTP/2 clients other than Node (the proxy\'s own HTTP/2 server, src/h2)', () => {
  it('curl --http2-prior-knowledge: a 1 MiB POST body to an HTTP/2 and an HTTP/1.1 upstream, echoed back whole', async () => {
    // Far past the 64 KiB stream window both ways: the proxy credits the window as the upstream takes the body, and
    // sends the echoed ~1 MiB response as the client's window allows.
    const body = randomBytes(512 * 1024).toString('hex');
    const file = join(tmp, 'body');
    writeFileSync(file, body);
    for (const svc of ['h2svc', 'h1svc']) {
      const out = await run('curl', [
        '-sS', '--http2-prior-knowledge', '-H', `host: ${svc}`, '--data-binary', `@${file}`,
        '-w', '\n%{http_version} %{response_code}', `http://127.0.0.1:${port}/upload`,
      ]);
      const nl = out.lastIndexOf('\n');
      expect(out.slice(nl + 1), svc).toBe('2 200');
      const echoed = JSON.parse(out.slice(0, nl)) as { name: string; body: string };
      expect(echoed.name).toBe(svc.slice(0, 2));
      expect(echoed.body.length).toBe(body.length);
      expect(sha256(echoed.body)).toBe(sha256(body));
    }
  });

  it('expect: 100-continue is answered by the proxy at once (curl would wait 5 s for it here)', async () => {
    const file = join(tmp, 'continue-body');
    writeFileSync(file, 'c'.repeat(100_000));
    const started = Date.now();
    const out = await run('curl', [
      '-sS', '--http2-prior-knowledge', '--expect100-timeout', '5', '-H', 'host: h2svc', '-H', 'expect: 100-continue',
      '--data-binary', `@${file}`, '-w', '\n%{response_code}', `http://127.0.0.1:${port}/continue`,
    ]);
    expect(out.slice(out.lastIndexOf('\n') + 1)).toBe('200');
    expect((JSON.parse(out.slice(0, out.lastIndexOf('\n'))) as { body: string }).body.length).toBe(100_000);
    expect(Date.now() - started).toBeLessThan(2_500);
  });

  it('h2load: 2,000 requests with bodies, 4 connections × 10 streams, all succeed', async () => {
    const file = join(tmp, 'h2load-body');
    writeFileSync(file, 'x'.repeat(10_000));
    const out = await run('/usr/bin/h2load', [
      '-n', '2000', '-c', '4', '-m', '10', '-d', file, '-H', ':authority: h2svc', `http://127.0.0.1:${port}/load`,
    ]);
    expect(out).toMatch(/requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored/);
    expect(out).toMatch(/status codes: 2000 2xx/);
  });

  it('CONNECT is refused with 404 no_route (no connect matcher), the connection serves on', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const r = await h2request(session, { ':method': 'CONNECT', ':authority': 'h2svc:8080' });
      expect(r.headers[':status']).toBe(404);
      expect(r.headers['x-pillion-reason']).toBe('no_route');
      expect(r.body).toContain('CONNECT is not supported');
      const after = await h2request(session, { ':path': '/after', ':authority': 'h2svc' });
      expect(after.headers[':status']).toBe(200);
    } finally {
      session.close();
    }
  });

  it('a 1 MiB POST answered 404 before its body arrived: the rest is read and dropped, the upload completes', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/', ':authority': 'unknown' });
      let status = 0;
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('error', () => {});
      stream.resume();
      // Past the 64 KiB stream window: without the proxy crediting what it drops, the upload would stall here.
      stream.end(Buffer.alloc(1024 * 1024, 'u'));
      const closed = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 5_000);
        stream.on('close', () => {
          clearTimeout(timer);
          resolve(true);
        });
      });
      expect(status).toBe(404);
      expect(closed, 'the stream closed: the whole body was taken').toBe(true);
      expect(stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
      const after = await h2request(session, { ':path': '/after', ':authority': 'h2svc' });
      expect(after.headers[':status']).toBe(200);
    } finally {
      session.close();
    }
  });

  it('a request with a host header and no :authority is routed by its host (RFC 9113 §8.3.1)', async () => {
    const c = new RawH2Client(port);
    try {
      await c.ready;
      await c.write(headersFrames(1, headerBlock([[':method', 'GET'], [':scheme', 'http'], [':path', '/by-host'], ['host', 'h2svc']]), true));
      expect(await eventually(() => c.dataBytes, (n) => n > 0, 3_000)).toBeGreaterThan(0);
      expect(c.statusByte.get(1), 'the first octet of the response head: 0x88 is :status 200').toBe(0x88);
    } finally {
      c.destroy();
    }
  });

  it('a malformed head (an uppercase name; extended CONNECT) gets RST_STREAM PROTOCOL_ERROR, counted as bad_request; the connection serves on', async () => {
    const count = async (): Promise<number> => {
      const text = (await request(proxy.adminPort, { path: '/metrics' })).body;
      return Number(/pillion_local_replies_total\{reason="bad_request"\} (\d+)/.exec(text)?.[1] ?? 0);
    };
    const before = await count();
    const c = new RawH2Client(port);
    try {
      await c.ready;
      await c.write(headersFrames(1, headerBlock([[':method', 'GET'], [':scheme', 'http'], [':authority', 'h2svc'], [':path', '/'], ['X-Bad', 'v']]), true));
      expect(await eventually(() => c.resets.get(1), (code) => code !== undefined, 3_000)).toBe(http2.constants.NGHTTP2_PROTOCOL_ERROR);
      // Extended CONNECT (RFC 8441, WebSockets over HTTP/2): not offered (no SETTINGS_ENABLE_CONNECT_PROTOCOL), refused.
      const ws = headerBlock([[':method', 'CONNECT'], [':protocol', 'websocket'], [':scheme', 'http'], [':authority', 'h2svc'], [':path', '/chat']]);
      await c.write(headersFrames(3, ws, false));
      expect(await eventually(() => c.resets.get(3), (code) => code !== undefined, 3_000)).toBe(http2.constants.NGHTTP2_PROTOCOL_ERROR);
      await c.write(headersFrames(5, headerBlock([[':method', 'GET'], [':scheme', 'http'], [':authority', 'h2svc'], [':path', '/']]), true));
      expect(await eventually(() => c.statusByte.get(5), (b) => b !== undefined, 3_000)).toBe(0x88);
      expect(await count()).toBe(before + 2);
    } finally {
      c.destroy();
    }
  });

  it('a HEAD answered by the proxy states the length of its reply but sends no body', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const r = await h2request(session, { ':method': 'HEAD', ':path': '/', ':authority': 'unknown' });
      expect(r.headers[':status']).toBe(404);
      expect(Number(r.headers['content-length'])).toBeGreaterThan(0);
      expect(r.body).toBe('');
    } finally {
      session.close();
    }
  });
});

describe('gRPC', () => {
  it('unary call with response metadata', async () => {
    const client = echoClient(port, 'greeter.default:50051');
    try {
      const reply = await new Promise<{ text: string; served: unknown }>((resolve, reject) => {
        let served: unknown;
        const call = client.Unary({ text: 'hi' }, (err: Error | null, res: { text: string }) =>
          err ? reject(err) : resolve({ text: res.text, served }),
        );
        call.on('metadata', (md: grpc.Metadata) => (served = md.get('x-served-by')[0]));
      });
      expect(reply.text).toBe('echo:hi');
      expect(reply.served).toBe('echo');
    } finally {
      client.close();
    }
  });

  it('carries grpc-status and grpc-message from the server through trailers', async () => {
    const client = echoClient(port, 'greeter:50051');
    try {
      const err = await new Promise<grpc.ServiceError>((resolve) => client.Unary({ text: 'fail' }, (e: grpc.ServiceError) => resolve(e)));
      expect(err.code).toBe(grpc.status.NOT_FOUND);
      expect(err.details).toBe('no such thing');
    } finally {
      client.close();
    }
  });

  it('bidirectional streaming keeps order and half-close', async () => {
    const client = echoClient(port, 'greeter.default.svc.cluster.local:50051');
    try {
      const call = client.Chat();
      const got: string[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', (m: { text: string }) => got.push(m.text));
        call.on('end', resolve);
        call.on('error', reject);
      });
      for (let i = 0; i < 5; i++) call.write({ text: `m${i}` });
      call.end();
      await done;
      expect(got).toEqual(['echo:m0', 'echo:m1', 'echo:m2', 'echo:m3', 'echo:m4']);
    } finally {
      client.close();
    }
  });

  it('bidirectional streaming of 200 messages of 16 KiB (past every flow-control window) arrives whole and in order', async () => {
    const client = echoClient(port, 'greeter:50051');
    try {
      const call = client.Chat();
      const pad = 'p'.repeat(16 * 1024);
      const got: string[] = [];
      const done = new Promise<void>((resolve, reject) => {
        call.on('data', (m: { text: string }) => got.push(m.text));
        call.on('end', resolve);
        call.on('error', reject);
      });
      for (let i = 0; i < 200; i++) call.write({ text: `${i}:${pad}` });
      call.end();
      await done;
      expect(got.length).toBe(200);
      expect(got.every((t, i) => t === `echo:${i}:${pad}`)).toBe(true);
    } finally {
      client.close();
    }
  });

  it('a gRPC call to an unknown service gets UNIMPLEMENTED from the proxy', async () => {
    const client = echoClient(port, 'nobody:50051');
    try {
      const err = await new Promise<grpc.ServiceError>((resolve) => client.Unary({ text: 'x' }, (e: grpc.ServiceError) => resolve(e)));
      expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
      expect(err.metadata.get('x-pillion-reason')[0]).toBe('no_route');
    } finally {
      client.close();
    }
  });
});

describe('test teardown', () => {
  it('the gRPC test server closes within its grace even with a call nobody ends (teardown can never hang the suite)', async () => {
    const server = await startEchoServer('teardown');
    // A raw HTTP/2 client opens a Chat call and leaves it open: tryShutdown alone waits for it for ever.
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on('error', () => {});
    const stream = session.request({ ':method': 'POST', ':path': '/pillion.test.Echo/Chat', 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', () => {});
    const frame = Buffer.from([0, 0, 0, 0, 3, 0x0a, 1, 0x61]); // one message: { text: "a" }
    stream.write(frame);
    await new Promise<void>((resolve) => stream.once('data', () => resolve())); // the server is in the call
    try {
      const started = Date.now();
      const closed = await Promise.race([server.close(500).then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5_000))]);
      expect(closed, 'closed within 5 s').toBe(true);
      expect(Date.now() - started).toBeLessThan(5_000);
      // forceShutdown ended the call: the client's stream is gone too.
      expect(await eventually(() => stream.closed, (c) => c, 3_000)).toBe(true);
    } finally {
      session.destroy();
    }
  });
});
