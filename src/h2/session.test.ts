// H2Session on real sockets: our client role against node:http2 servers, our server role against node:http2
// clients, h2load, nghttp and curl, and our client against our server.
import { afterEach, describe, expect, it } from 'vitest';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { newHeaderMap } from '../http/headers.js';
import { H2Error } from './errors.js';
import { H2Session } from './session.js';
import type { H2Stream } from './stream.js';
import { connectH2, echoHandler, listenH2, SessionRecorder, StreamRecorder, TEST_OPTIONS, writeBody } from '../../test/helpers/h2-peers.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function nodeServer(onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void, settings: http2.Settings = {}): Promise<{ server: http2.Http2Server; port: number }> {
  const server = http2.createServer({ settings });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    onStream(stream, headers);
  });
  server.on('error', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => {
    sessions.add(s);
    s.on('close', () => sessions.delete(s));
  });
  cleanups.push(() => {
    for (const s of sessions) s.destroy();
  });
  return { server, port: (server.address() as AddressInfo).port };
}

function get(session: H2Session, path = '/', endStream = true): { stream: H2Stream; rec: StreamRecorder } {
  const rec = new StreamRecorder();
  const stream = session.request('GET', 'http', 'test.local', path, newHeaderMap(), endStream, rec);
  return { stream, rec };
}

function run(cmd: string, args: string[], timeoutMs = 15_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('client role against node:http2', () => {
  it('GET: status, headers and body', async () => {
    const { port } = await nodeServer((stream, headers) => {
      stream.respond({ ':status': 200, 'x-path': String(headers[':path']), 'x-auth': String(headers[':authority']) });
      stream.end('hello');
    });
    const { session, rec: srec } = await connectH2(port);
    cleanups.push(() => session.destroy());
    expect(session.connected).toBe(true);
    const { rec } = get(session, '/a?b=1');
    await rec.done;
    expect(rec.reset).toBeNull();
    expect(rec.head!.status).toBe(200);
    expect(rec.head!.headers['x-path']).toBe('/a?b=1');
    expect(rec.head!.headers['x-auth']).toBe('test.local');
    expect(rec.body.toString()).toBe('hello');
    expect(session.activeStreams).toBe(0);
    session.close();
    await srec.closed;
    expect(srec.close!.error).toBeNull();
  });

  it('POST of 1 MiB echoed back: flow control both ways', async () => {
    const { port } = await nodeServer((stream) => {
      stream.respond({ ':status': 200 });
      stream.pipe(stream);
    });
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const body = randomBytes(1 << 20);
    const rec = new StreamRecorder();
    const stream = session.request('POST', 'http', 'test.local', '/echo', newHeaderMap(), false, rec);
    writeBody(stream, rec, body, 100_000);
    await rec.done;
    expect(rec.reset).toBeNull();
    expect(rec.head!.status).toBe(200);
    expect(rec.body.equals(body)).toBe(true);
    expect(rec.drains).toBeGreaterThan(0);
  });

  it('trailers after DATA (gRPC-style response)', async () => {
    const { port } = await nodeServer((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'fine' }));
      stream.end(Buffer.from([0, 0, 0, 0, 2, 8, 1]));
    });
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const { rec } = get(session);
    await rec.done;
    expect(rec.head!.headers['content-type']).toBe('application/grpc');
    expect(rec.body.length).toBe(7);
    expect(rec.trailers).not.toBeNull();
    expect(rec.trailers!['grpc-status']).toBe('0');
    expect(rec.trailers!['grpc-message']).toBe('fine');
  });

  it('200 streams against maxConcurrentStreams 10: the caller waits on peerMaxConcurrentStreams', async () => {
    let active = 0;
    let maxActive = 0;
    const { port } = await nodeServer(
      (stream) => {
        active++;
        maxActive = Math.max(maxActive, active);
        stream.on('close', () => active--);
        setTimeout(() => {
          stream.respond({ ':status': 200 });
          stream.end('x');
        }, 2);
      },
      { maxConcurrentStreams: 10 },
    );
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    expect(session.peerMaxConcurrentStreams).toBe(10);
    let started = 0;
    let ok = 0;
    let maxOurs = 0;
    await new Promise<void>((resolve, reject) => {
      const next = (): void => {
        while (started < 200 && session.canOpen && session.activeStreams < session.peerMaxConcurrentStreams) {
          started++;
          const { rec } = get(session, `/${started}`);
          maxOurs = Math.max(maxOurs, session.activeStreams);
          rec.done.then(() => {
            if (rec.reset !== null || rec.head?.status !== 200) return reject(new Error(`stream failed: ${JSON.stringify(rec.reset)}`));
            if (++ok === 200) resolve();
            else setImmediate(next);
          }, reject);
        }
      };
      next();
    });
    expect(ok).toBe(200);
    expect(maxOurs).toBeLessThanOrEqual(10);
    expect(maxActive).toBeLessThanOrEqual(10);
  });

  it('server GOAWAY mid-stream: streams above lastStreamId are refused, the others finish', async () => {
    const held: http2.ServerHttp2Stream[] = [];
    const { port } = await nodeServer((stream) => {
      held.push(stream);
      if (held.length === 3) {
        stream.session!.goaway(http2.constants.NGHTTP2_NO_ERROR, held[0]!.id!);
        setTimeout(() => {
          held[0]!.respond({ ':status': 200 });
          held[0]!.end('first');
        }, 20);
      }
    });
    const { session, rec: srec } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const a = get(session, '/1');
    const b = get(session, '/2');
    const c = get(session, '/3');
    await Promise.all([a.rec.done, b.rec.done, c.rec.done]);
    expect(a.rec.reset).toBeNull();
    expect(a.rec.body.toString()).toBe('first');
    expect(b.rec.reset?.code).toBe(H2Error.REFUSED_STREAM);
    expect(c.rec.reset?.code).toBe(H2Error.REFUSED_STREAM);
    expect(srec.goaway).toEqual({ code: 0, last: 1 });
    expect(session.canOpen).toBe(false);
    await srec.closed;
    expect(srec.close!.error).toBeNull();
  });

  it('connection-specific fields a caller left in are not sent (node:http2 would refuse the stream)', async () => {
    const { port } = await nodeServer((stream, headers) => {
      stream.respond({ ':status': 200, 'x-seen': Object.keys(headers).filter((n) => !n.startsWith(':')).sort().join(',') });
      stream.end();
    });
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const h = newHeaderMap();
    h.connection = 'keep-alive';
    h['keep-alive'] = 'timeout=5';
    h['transfer-encoding'] = 'chunked';
    h['x-kept'] = '1';
    const rec = new StreamRecorder();
    session.request('GET', 'http', 'x', '/', h, true, rec);
    await rec.done;
    expect(rec.reset).toBeNull();
    expect(rec.head!.headers['x-seen']).toBe('x-kept');
    expect(h.connection).toBe('keep-alive'); // the caller's map is not changed
  });

  it('server RST_STREAM reaches the stream owner with its code; the session serves on', async () => {
    const { port } = await nodeServer((stream, headers) => {
      if (headers[':path'] === '/reset') stream.close(http2.constants.NGHTTP2_CANCEL);
      else {
        stream.respond({ ':status': 204 });
        stream.end();
      }
    });
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const r = get(session, '/reset');
    await r.rec.done;
    expect(r.rec.reset?.code).toBe(H2Error.CANCEL);
    const ok = get(session, '/fine');
    await ok.rec.done;
    expect(ok.rec.head!.status).toBe(204);
    expect(ok.rec.reset).toBeNull();
  });
});

describe('server role', () => {
  it('node:http2 client: GET and POST with trailers', async () => {
    const { server, port } = await listenH2(echoHandler);
    cleanups.push(() => server.close());
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => {});
    cleanups.push(() => client.destroy());
    const getRes = await new Promise<{ status: number; body: string; path: string }>((resolve, reject) => {
      const req = client.request({ ':path': '/g' });
      let status = 0;
      let path = '';
      let body = '';
      req.on('response', (h) => {
        status = Number(h[':status']);
        path = String(h['x-echo-path']);
      });
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => resolve({ status, body, path }));
      req.on('error', reject);
    });
    expect(getRes).toEqual({ status: 200, body: '', path: '/g' });
    const payload = randomBytes(300_000);
    const post = await new Promise<{ body: Buffer; trailers: http2.IncomingHttpHeaders | null }>((resolve, reject) => {
      const req = client.request({ ':path': '/p', ':method': 'POST' }, { waitForTrailers: true });
      const chunks: Buffer[] = [];
      let trailers: http2.IncomingHttpHeaders | null = null;
      req.on('wantTrailers', () => req.sendTrailers({ 'x-sum': 'abc' }));
      req.on('trailers', (t) => (trailers = t));
      req.on('data', (d: Buffer) => chunks.push(d));
      req.on('end', () => resolve({ body: Buffer.concat(chunks), trailers }));
      req.on('error', reject);
      req.end(payload);
    });
    expect(post.body.equals(payload)).toBe(true);
    expect(post.trailers?.['x-sum']).toBe('abc');
  });

  it('h2load: 2000 requests over 4 connections, 10 streams each, all succeed', async () => {
    const { server, port } = await listenH2((_s, stream, _h, endStream) => {
      stream.respond(200, { 'content-type': 'text/plain' }, false);
      stream.write(Buffer.from('hello h2load'));
      stream.end(null);
      if (!endStream) stream.owner = null;
    });
    cleanups.push(() => server.close());
    const r = await run('h2load', ['-n', '2000', '-c', '4', '-m', '10', `http://127.0.0.1:${port}/`]);
    expect(r.stdout).toMatch(/2000 succeeded, 0 failed, 0 errored/);
    expect(r.stdout).toMatch(/status codes: 2000 2xx/);
  });

  it('nghttp -v and curl --http2-prior-knowledge', async () => {
    const { server, port } = await listenH2((_s, stream, head) => {
      stream.respond(200, { 'x-method': head.method, 'content-length': '5' }, false);
      stream.write(Buffer.from('howdy'));
      stream.end(null);
    });
    cleanups.push(() => server.close());
    const ng = await run('nghttp', ['-v', `http://127.0.0.1:${port}/n`]);
    expect(ng.code).toBe(0);
    expect(ng.stdout).toMatch(/:status: 200/);
    expect(ng.stdout).toMatch(/x-method: GET/);
    expect(ng.stdout).toMatch(/howdy/);
    const curl = await run('curl', ['-sS', '-i', '--http2-prior-knowledge', `http://127.0.0.1:${port}/c`]);
    expect(curl.code).toBe(0);
    expect(curl.stdout).toMatch(/^HTTP\/2 200/);
    expect(curl.stdout).toMatch(/howdy$/);
  });

  it('answers a header list over maxHeaderListSize with 431 and serves on', async () => {
    const { server, port, recorders } = await listenH2(echoHandler, { maxConcurrentStreams: 100, maxHeaderListSize: 4096, maxHeaderCount: 100 });
    cleanups.push(() => server.close());
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => {});
    cleanups.push(() => client.destroy());
    const status = (headers: http2.OutgoingHttpHeaders): Promise<{ status: number; reason: unknown }> =>
      new Promise((resolve, reject) => {
        const req = client.request(headers);
        req.on('response', (h) => resolve({ status: Number(h[':status']), reason: h['x-pillion-reason'] }));
        req.on('error', reject);
        req.resume();
      });
    expect(await status({ ':path': '/big', 'x-big': 'a'.repeat(5000) })).toEqual({ status: 431, reason: 'headers_too_large' });
    expect(await status({ ':path': '/small' })).toEqual({ status: 200, reason: undefined });
    expect(recorders[0]!.refusedHeads).toEqual(['headers_too_large']);
  });
});

describe('our client against our server', () => {
  it('GET, POST of 1 MiB echoed with backpressure, trailers both ways, graceful close', async () => {
    const { server, port, recorders } = await listenH2(echoHandler);
    cleanups.push(() => server.close());
    const { session, rec: srec } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const g = get(session, '/hello');
    await g.rec.done;
    expect(g.rec.head!.status).toBe(200);
    expect(g.rec.head!.headers['x-echo-path']).toBe('/hello');

    const body = randomBytes(1 << 20);
    const rec = new StreamRecorder();
    const stream = session.request('POST', 'http', 'x', '/up', newHeaderMap(), false, rec);
    const trailers = newHeaderMap();
    trailers['x-check'] = 'yes';
    writeBody(stream, rec, body, 50_000, trailers);
    await rec.done;
    expect(rec.reset).toBeNull();
    expect(rec.body.equals(body)).toBe(true);
    expect(rec.trailers?.['x-check']).toBe('yes');
    expect(session.activeStreams).toBe(0);

    session.close();
    await srec.closed;
    await recorders[0]!.closed;
    expect(srec.close!.error).toBeNull();
    expect(recorders[0]!.close!.sentGoawayCode).toBe(-1);
  });

  it('an interim 100 Continue from respond(100) precedes the final head; curl waiting on expect: 100-continue gets it', async () => {
    const { server, port } = await listenH2((_s, stream, head, endStream) => {
      if (head.headers.expect === '100-continue') stream.respond(100, null, false);
      stream.respond(200, { 'x-final': 'yes' }, endStream);
      if (!endStream) stream.owner = { onHead() {}, onData() {}, onEnd: (st) => st.end(null), onReset() {}, onDrain() {} };
    });
    cleanups.push(() => server.close());
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const h = newHeaderMap();
    h.expect = '100-continue';
    const rec = new StreamRecorder();
    const stream = session.request('POST', 'http', 'x', '/', h, false, rec);
    stream.end(null);
    await rec.done;
    expect(rec.head!.status).toBe(200);
    expect(rec.head!.headers['x-final']).toBe('yes');
    const t0 = Date.now();
    const curl = await run('curl', ['-sS', '-i', '--http2-prior-knowledge', '-H', 'Expect: 100-continue', '--data-binary', 'x'.repeat(2000), `http://127.0.0.1:${port}/c`]);
    expect(curl.stdout).toMatch(/^HTTP\/2 100/);
    expect(curl.stdout).toMatch(/HTTP\/2 200/);
    expect(Date.now() - t0).toBeLessThan(900); // curl would wait 1 s for a 100 that never came
  });

  it('a request reset by the client reaches the server owner; a server reset reaches the client', async () => {
    let serverSide: StreamRecorder | null = null;
    const { server, port } = await listenH2((_s, stream, head) => {
      if (head.path === '/refuse') return stream.reset(H2Error.REFUSED_STREAM);
      serverSide = new StreamRecorder();
      stream.owner = serverSide;
    });
    cleanups.push(() => server.close());
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const r = get(session, '/refuse');
    await r.rec.done;
    expect(r.rec.reset?.code).toBe(H2Error.REFUSED_STREAM);
    const hold = get(session, '/hold', false);
    await new Promise((res) => setTimeout(res, 50));
    expect(serverSide).not.toBeNull();
    hold.stream.reset(H2Error.CANCEL);
    await serverSide!.done;
    expect(serverSide!.reset?.code).toBe(H2Error.CANCEL);
  });

  it('destroy(): every open stream gets onReset, then onSessionClose once', async () => {
    const { server, port } = await listenH2(() => {});
    cleanups.push(() => server.close());
    const { session, rec: srec } = await connectH2(port);
    const a = get(session, '/a', false);
    const b = get(session, '/b', false);
    session.destroy();
    await Promise.all([a.rec.done, b.rec.done, srec.closed]);
    expect(a.rec.reset?.code).toBe(H2Error.CANCEL);
    expect(b.rec.reset?.code).toBe(H2Error.CANCEL);
    expect(session.canOpen).toBe(false);
    expect(() => get(session)).toThrow(/closing or closed/);
  });

  it('the server closing its socket mid-stream resets the client streams', async () => {
    const sockets: net.Socket[] = [];
    const { server, port } = await listenH2((s) => sockets.push(s.socket));
    cleanups.push(() => server.close());
    const { session, rec: srec } = await connectH2(port);
    const a = get(session, '/a', false);
    for (let i = 0; i < 50 && sockets.length === 0; i++) await new Promise((res) => setTimeout(res, 10));
    sockets[0]!.destroy();
    await Promise.all([a.rec.done, srec.closed]);
    expect(a.rec.reset?.code).toBe(H2Error.INTERNAL_ERROR);
    expect(srec.close!.error).not.toBeNull();
  });
});


describe('lifecycle', () => {
  it('server close() with a stream open: GOAWAY, the stream finishes, then both sides close cleanly', async () => {
    let held: H2Stream | null = null;
    const { server, port, sessions, recorders } = await listenH2((_s, stream) => {
      held = stream;
    });
    cleanups.push(() => server.close());
    const { session, rec: srec } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const a = get(session, '/slow');
    for (let i = 0; i < 100 && held === null; i++) await new Promise((res) => setTimeout(res, 10));
    sessions[0]!.close();
    for (let i = 0; i < 100 && srec.goaway === null; i++) await new Promise((res) => setTimeout(res, 10));
    expect(srec.goaway).toEqual({ code: 0, last: 1 });
    expect(session.canOpen).toBe(false);
    expect(a.rec.ended).toBe(false);
    held!.respond(200, null, false);
    held!.write(Buffer.from('late'));
    held!.end(null);
    await Promise.all([a.rec.done, srec.closed, recorders[0]!.closed]);
    expect(a.rec.body.toString()).toBe('late');
    expect(srec.close!.error).toBeNull();
    expect(recorders[0]!.close!.error).toBeNull();
  });

  it('client stream ids run out at 2^31-1: the last one works, then canOpen is false', async () => {
    const { server, port } = await listenH2(echoHandler);
    cleanups.push(() => server.close());
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    session.nextStreamId = 0x7ffffffd;
    const a = get(session, '/a');
    const b = get(session, '/b');
    await Promise.all([a.rec.done, b.rec.done]);
    expect(b.stream.id).toBe(0x7fffffff);
    expect(b.rec.head!.headers['x-echo-path']).toBe('/b');
    expect(session.canOpen).toBe(false);
    expect(() => get(session)).toThrow(/no new streams/);
  });

  it('a refused connect ends the session with the error; onSessionClose once', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    await expect(connectH2(port)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('an idle session holds no output buffer (returned to the shared pool once the kernel took the bytes)', async () => {
    const { server, port, sessions } = await listenH2(echoHandler);
    cleanups.push(() => server.close());
    const { session } = await connectH2(port);
    cleanups.push(() => session.destroy());
    const a = get(session, '/idle');
    await a.rec.done;
    await new Promise((res) => setTimeout(res, 20));
    expect(session.out.length).toBe(0);
    expect(sessions[0]!.out.length).toBe(0);
    expect(sessions[0]!.hdrBuf).toBeNull();
  });

  it('a socket handed over already closed: onSessionClose comes once, on the next tick', async () => {
    const accepted: net.Socket[] = [];
    const server = net.createServer((socket) => {
      socket.on('error', () => {});
      accepted.push(socket);
    });
    server.on('error', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => server.close());
    const client = net.connect((server.address() as AddressInfo).port, '127.0.0.1');
    client.on('error', () => {});
    for (let i = 0; i < 100 && accepted.length === 0; i++) await new Promise((res) => setTimeout(res, 5));
    client.destroy();
    await new Promise<void>((r) => accepted[0]!.once('close', () => r()));
    const rec = new SessionRecorder();
    const session = new H2Session(accepted[0]!, 'server', TEST_OPTIONS, rec);
    await rec.closed;
    expect(session.canOpen).toBe(false);
    expect(rec.close!.error).toBeNull();
  });

  it('server role takes over a socket whose first bytes a sniffer read and pushed back (unshift)', async () => {
    const recorders: SessionRecorder[] = [];
    const server = net.createServer((socket) => {
      socket.on('error', () => {}); // until the session takes the socket over
      socket.once('data', (first: Buffer) => {
        socket.pause();
        socket.unshift(first);
        const rec = new SessionRecorder();
        rec.onRequest = echoHandler;
        recorders.push(rec);
        new H2Session(socket, 'server', TEST_OPTIONS, rec);
      });
    });
    server.on('error', () => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => server.close());
    const { session } = await connectH2((server.address() as AddressInfo).port);
    cleanups.push(() => session.destroy());
    const a = get(session, '/sniffed');
    await a.rec.done;
    expect(a.rec.head!.headers['x-echo-path']).toBe('/sniffed');
  });
});
