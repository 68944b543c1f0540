// HTTP/2 behaviour the proxy's own codec (src/h2) owes its clients and upstreams beyond the happy path: request
// trailers, stream ends that race the other side, and the like. Real sockets on 127.0.0.1 both ways.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { spawn } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { echoClient, grpc, startEchoServerWith, type EchoServer } from '../helpers/grpc.js';
import { h2request, request } from '../helpers/client.js';
import { ERR, F, FrameReader, T, eventually, frame, headerBlock, headersFrames, requestBlock, startRawH2Server, sleep, type Frame, type RawH2Server, RawH2Client } from '../abuse/util.js';

let proxy: RunningProxy;
let port: number;
/** Echoes what it received: body, trailers, transfer-encoding. */
let h2up: http2.Http2Server;
let h1up: http.Server;
/** Answers every request at once, without reading its body. */
let early: http2.Http2Server;
/** Answers a request whose body is still coming with a complete response, then RST_STREAM NO_ERROR (RFC 9113 §8.1). */
let rstAfter: RawH2Server;
/** Answers whole, then sends DATA on the ended stream; records the GOAWAY codes it gets. */
let lateData: RawH2Server;
/** gRPC Chat that answers the first message and ends the call with OK, while the client still streams. */
let earlyGrpc: EchoServer;
const lateDataGoaways: number[] = [];
/** What h1up received: path and its x-a header (latin1 as Node decodes it). */
const h1upSeen: Array<{ path: string; value: string | undefined }> = [];
/** Answers with a control character in a response header (mode 'head') or in its trailers ('trailers'). */
let ctlUp: RawH2Server;
const ctlUpResets: number[] = [];

interface Echoed {
  body: string;
  trailers: Record<string, unknown>;
  te?: string;
}

beforeAll(async () => {
  h2up = http2.createServer();
  h2up.on('error', () => {});
  h2up.on('stream', (stream) => {
    stream.on('error', () => {});
    let body = '';
    let trailers: Record<string, unknown> = {};
    stream.on('data', (c: Buffer) => (body += c.toString()));
    stream.on('trailers', (t: http2.IncomingHttpHeaders) => (trailers = { ...t }));
    stream.on('end', () => {
      if (stream.destroyed) return; // cancelled by the proxy (its client reset the stream)
      stream.respond({ ':status': 200, 'x-upstream': 'h2' });
      stream.end(JSON.stringify({ body, trailers } satisfies Echoed));
    });
  });
  await new Promise<void>((r) => h2up.listen(0, '127.0.0.1', () => r()));
  h1up = http.createServer((req, res) => {
    h1upSeen.push({ path: req.url ?? '', value: req.headers['x-a'] as string | undefined });
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    res.setHeader('x-upstream', 'h1');
    req.on('end', () => res.end(JSON.stringify({ body, trailers: { ...req.trailers }, te: req.headers['transfer-encoding'] } satisfies Echoed)));
  });
  h1up.on('error', () => {});
  h1up.on('clientError', (_e, s) => s.destroy());
  await new Promise<void>((r) => h1up.listen(0, '127.0.0.1', () => r()));
  early = http2.createServer();
  early.on('error', () => {});
  early.on('stream', (stream) => {
    stream.on('error', () => {});
    stream.respond({ ':status': 200 });
    stream.end('early');
  });
  await new Promise<void>((r) => early.listen(0, '127.0.0.1', () => r()));
  rstAfter = await startRawH2Server((socket, f) => {
    if (f.type !== T.HEADERS) return;
    const head = headersFrames(f.stream, headerBlock([[':status', '200']]), false);
    socket.write(Buffer.concat([head, frame(T.DATA, F.END_STREAM, f.stream, Buffer.from('complete')), frame(T.RST_STREAM, 0, f.stream, Buffer.alloc(4))]));
  });
  lateData = await startRawH2Server((socket, f) => {
    if (f.type === T.GOAWAY) lateDataGoaways.push(f.payload.readUInt32BE(4));
    if (f.type !== T.HEADERS) return;
    const head = headersFrames(f.stream, headerBlock([[':status', '200']]), false);
    socket.write(Buffer.concat([head, frame(T.DATA, F.END_STREAM, f.stream, Buffer.from('whole'))]));
    setTimeout(() => socket.write(frame(T.DATA, 0, f.stream, Buffer.from('late'))), 50);
  });
  ctlUp = await startRawH2Server((socket, f) => {
    if (f.type === T.RST_STREAM) ctlUpResets.push(f.payload.readUInt32BE(0));
    if (f.type !== T.HEADERS) return;
    const path = /\/ctl-[a-z]+/.exec(f.payload.toString('latin1'))?.[0];
    if (path === '/ctl-head') {
      socket.write(headersFrames(f.stream, headerBlock([[':status', '200'], ['x-ok', 'fine'], ['x-bad', 'a\x01b']]), true));
    } else {
      const head = headersFrames(f.stream, headerBlock([[':status', '200']]), false);
      const data = frame(T.DATA, 0, f.stream, Buffer.from('partial'));
      socket.write(Buffer.concat([head, data, headersFrames(f.stream, headerBlock([['grpc-message', 'bell\x07']]), true)]));
    }
  });
  earlyGrpc = await startEchoServerWith({
    Chat(call: { on(e: string, f: (m: { text: string }) => void): void; write(m: { text: string }): void; end(): void }) {
      let first = true;
      call.on('data', (m) => {
        if (!first) return;
        first = false;
        call.write({ text: `done:${m.text}` });
        call.end();
      });
    },
  });
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: h2up
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${(h2up.address() as AddressInfo).port} }]
  - name: h1up
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${(h1up.address() as AddressInfo).port} }]
  - name: early
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${(early.address() as AddressInfo).port} }]
  - name: rstafter
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${rstAfter.port} }]
  - name: latedata
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${lateData.port} }]
  - name: ctlup
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${ctlUp.port} }]
  - name: earlygrpc
    ports: [{ port: 50051, protocol: grpc }]
    endpoints: [{ address: 127.0.0.1, port: ${earlyGrpc.port} }]
  - name: pseudo
    ports: [{ port: 8080, protocol: http2 }]
    endpoints: [{ address: 127.0.0.1, port: ${(h2up.address() as AddressInfo).port} }]
    routes:
      - match: { prefix: /tls, headers: [{ name: ":scheme", exact: https }] }
        to: { service: h1up }
      - match: { prefix: /plain, headers: [{ name: ":scheme", exact: http }] }
        to: { service: h1up }
      - match: { prefix: /m, headers: [{ name: ":method", exact: PUT }] }
        to: { service: h1up }
      - match: { prefix: /p, headers: [{ name: ":path", exact: /p?x=1 }] }
        to: { service: h1up }
      - match: { prefix: /a, headers: [{ name: ":authority", prefix: "pseudo:" }] }
        to: { service: h1up }
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  // grpc-js's tryShutdown first: a session the proxy's close destroys before grpc-js saw its 'close' would never
  // call its callback (Node's session.close() on a destroyed session does nothing).
  const grpcClosed = earlyGrpc.close();
  await proxy.close();
  await new Promise<void>((r) => h2up.close(() => r()));
  await new Promise<void>((r) => h1up.close(() => r()));
  await new Promise<void>((r) => early.close(() => r()));
  await rstAfter.close();
  await lateData.close();
  await ctlUp.close();
  await grpcClosed;
});

/** One HTTP/2 request whose body ends with trailers; resolves with the status and the upstream's echo. */
function withTrailers(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body: string,
  trailers: http2.OutgoingHttpHeaders,
): Promise<{ status: number; echoed: Echoed }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { waitForTrailers: true });
    let status = 0;
    let text = '';
    stream.on('wantTrailers', () => stream.sendTrailers(trailers));
    stream.on('response', (h) => (status = Number(h[':status'])));
    stream.on('data', (c: Buffer) => (text += c.toString()));
    stream.on('end', () => {
      try {
        resolve({ status, echoed: JSON.parse(text) as Echoed });
      } catch (err) {
        reject(new Error(`status ${status}, body ${text}: ${String(err)}`));
      }
    });
    stream.on('error', reject);
    stream.end(body);
  });
}

describe('request trailers from an HTTP/2 client', () => {
  it('reach an HTTP/2 upstream as a trailing HEADERS frame (POST as is, PUT through the replay buffer)', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      for (const method of ['POST', 'PUT']) {
        const r = await withTrailers(session, { ':method': method, ':path': '/t', ':authority': 'h2up' }, 'data', { 'x-checksum': 'abc', 'x-n': '2' });
        expect(r.status).toBe(200);
        expect(r.echoed.body).toBe('data');
        expect(r.echoed.trailers).toMatchObject({ 'x-checksum': 'abc', 'x-n': '2' });
      }
    } finally {
      session.close();
    }
  });

  it('reach an HTTP/1.1 upstream in the last chunk of a chunked body', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      for (const method of ['POST', 'PUT']) {
        const r = await withTrailers(session, { ':method': method, ':path': '/t', ':authority': 'h1up' }, 'data', { 'x-checksum': 'abc' });
        expect(r.status).toBe(200);
        expect(r.echoed).toMatchObject({ body: 'data', te: 'chunked', trailers: { 'x-checksum': 'abc' } });
      }
      // With a content-length the HTTP/1.1 body is not chunked: no place for trailers, they are dropped.
      const r = await withTrailers(
        session,
        { ':method': 'POST', ':path': '/t', ':authority': 'h1up', 'content-length': '4' },
        'data',
        { 'x-checksum': 'abc' },
      );
      expect(r.status).toBe(200);
      expect(r.echoed.body).toBe('data');
      expect(r.echoed.trailers).toEqual({});
    } finally {
      session.close();
    }
  });
});

describe('request trailers a client may not set', () => {
  // Framing, routing and identity fields never go upstream as trailers: an upstream that merges trailers into
  // the head would take them for a second content-length or host, or for what the proxy vouches for.
  const forbidden = {
    'content-length': '999',
    authorization: 'Bearer forged',
    cookie: 'session=forged',
    'x-forwarded-for': '6.6.6.6',
    'x-forwarded-client-cert': 'By=spiffe://forged',
    'x-request-id': 'forged',
  };

  it('are dropped from an HTTP/2 client\'s trailers, to either upstream', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      for (const authority of ['h2up', 'h1up']) {
        const r = await withTrailers(session, { ':method': 'POST', ':path': '/t', ':authority': authority }, 'data', { 'x-checksum': 'abc', ...forbidden });
        expect(r.status, authority).toBe(200);
        expect(r.echoed.body, authority).toBe('data');
        expect(r.echoed.trailers, authority).toEqual({ 'x-checksum': 'abc' });
      }
    } finally {
      session.close();
    }
  });

  it('are dropped from an HTTP/1.1 client\'s chunked trailers, to either upstream (host too)', async () => {
    for (const host of ['h2up', 'h1up']) {
      const echoed = await new Promise<Echoed>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/t', headers: { host, 'transfer-encoding': 'chunked' }, agent: false }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(JSON.parse(text) as Echoed));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.write('data');
        // (A content-length trailer after a chunked body llhttp refuses itself: 400.)
        const { 'content-length': _cl, ...rest } = forbidden;
        req.addTrailers({ 'x-checksum': 'abc', host: 'elsewhere', ...rest });
        req.end();
      });
      expect(echoed.body, host).toBe('data');
      expect(echoed.trailers, host).toEqual({ 'x-checksum': 'abc' });
    }
  });
});

describe('request trailers from an HTTP/1.1 client (chunked body)', () => {
  it('reach an HTTP/2 upstream as trailers and an HTTP/1.1 upstream in the last chunk', async () => {
    for (const host of ['h2up', 'h1up']) {
      const echoed = await new Promise<Echoed>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/t', headers: { host, 'transfer-encoding': 'chunked', trailer: 'x-checksum' }, agent: false }, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve(JSON.parse(text) as Echoed));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.write('data');
        req.addTrailers({ 'x-checksum': 'abc' });
        req.end();
      });
      expect(echoed.body, host).toBe('data');
      expect(echoed.trailers, host).toMatchObject({ 'x-checksum': 'abc' });
    }
  });
});

describe('pseudo-header route matchers', () => {
  it(':scheme, :method, :path and :authority match for HTTP/2 and HTTP/1.1 requests alike', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const h2 = async (path: string, extra: http2.OutgoingHttpHeaders = {}): Promise<unknown> =>
        (await h2request(session, { ':path': path, ':authority': 'pseudo', ...extra })).headers['x-upstream'];
      const h1 = async (path: string, opts: { method?: string; host?: string } = {}): Promise<unknown> =>
        (await request(port, { host: opts.host ?? 'pseudo', path, method: opts.method ?? 'GET' })).headers['x-upstream'];
      // HTTP/2: the client's :scheme (a client may say https over cleartext to a proxy).
      expect(await h2('/tls', { ':scheme': 'https' })).toBe('h1');
      expect(await h2('/tls')).toBe('h2');
      expect(await h2('/plain')).toBe('h1');
      // HTTP/1.1 over cleartext: http.
      expect(await h1('/plain')).toBe('h1');
      expect(await h1('/tls')).toBe('h2');
      expect(await h2('/m', { ':method': 'PUT' })).toBe('h1');
      expect(await h2('/m')).toBe('h2');
      expect(await h1('/m', { method: 'PUT' })).toBe('h1');
      expect(await h1('/m')).toBe('h2');
      expect(await h2('/p?x=1')).toBe('h1');
      expect(await h2('/p?x=2')).toBe('h2');
      expect(await h1('/p?x=1')).toBe('h1');
      expect(await h1('/p?x=2')).toBe('h2');
      expect(await h2('/a', { ':authority': 'pseudo:8080' })).toBe('h1');
      expect(await h2('/a')).toBe('h2');
      expect(await h1('/a', { host: 'pseudo:8080' })).toBe('h1');
      expect(await h1('/a')).toBe('h2');
    } finally {
      session.close();
    }
  });
});

describe('a response complete while the request body is still coming', () => {
  it('the client gets RST_STREAM NO_ERROR after the response\'s END_STREAM; body frames racing it are ignored', async () => {
    const c = new RawH2Client(port);
    const seen: Frame[] = [];
    const reader = new FrameReader((f) => seen.push(f), 0);
    c.socket.on('data', (d: Buffer) => reader.push(d));
    try {
      await c.ready;
      // Stream 1: an upstream that answers at once; stream 3: a local reply (404 no_route).
      await c.write(headersFrames(1, requestBlock('early', '/', 'POST'), false));
      await c.write(frame(T.DATA, 0, 1, Buffer.alloc(100)));
      await c.write(headersFrames(3, requestBlock('unknown', '/', 'POST'), false));
      for (let i = 0; i < 200 && c.resets.size < 2; i++) await sleep(10);
      for (const id of [1, 3]) {
        const frames = seen.filter((f) => f.stream === id);
        const endAt = frames.findIndex((f) => (f.type === T.DATA || f.type === T.HEADERS) && (f.flags & F.END_STREAM) !== 0);
        const rstAt = frames.findIndex((f) => f.type === T.RST_STREAM);
        expect(endAt, `stream ${id}: the response ends`).toBeGreaterThanOrEqual(0);
        expect(rstAt, `stream ${id}: RST_STREAM after END_STREAM`).toBe(endAt + 1);
        expect(c.resets.get(id)).toBe(ERR.NO_ERROR);
      }
      // The client's frames sent before it saw the reset: ignored, the connection serves on.
      await c.write(Buffer.concat([frame(T.DATA, 0, 1, Buffer.alloc(100)), frame(T.DATA, F.END_STREAM, 3, Buffer.alloc(10))]));
      await c.write(headersFrames(5, requestBlock('h2up', '/after'), true));
      for (let i = 0; i < 200 && !c.responses.has(5); i++) await sleep(10);
      expect(c.responses.has(5)).toBe(true);
      expect(c.statusByte.get(5)).toBe(0x88); // :status 200
      expect(c.goaway).toBeNull();
    } finally {
      c.destroy();
    }
  });

  it('an upstream that answers whole, then sends RST_STREAM NO_ERROR: the client gets the whole response', async () => {
    // HTTP/1.1 client: the body's first chunk goes, the rest only after the response arrived.
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { host: 'rstafter' }, agent: false }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
        res.on('error', reject);
        req.end('rest');
      });
      req.on('error', reject);
      req.write('first');
    });
    expect(r).toEqual({ status: 200, body: 'complete' });
    // HTTP/2 client, same upstream.
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({ ':method': 'POST', ':path': '/', ':authority': 'rstafter' });
        let status = 0;
        let body = '';
        stream.on('response', (h) => (status = Number(h[':status'])));
        stream.on('data', (d: Buffer) => (body += d.toString()));
        stream.on('end', () => resolve({ status, body }));
        stream.on('error', reject);
        stream.write('first');
      });
      expect(reply).toEqual({ status: 200, body: 'complete' });
    } finally {
      session.close();
    }
  });
});

describe('a gRPC call the server ends while the client still streams', () => {
  it('the client gets the messages and status OK (the RST_STREAM NO_ERROR that follows is no error); the channel serves on', async () => {
    const client = echoClient(port, 'earlygrpc:50051');
    try {
      for (let round = 0; round < 2; round++) {
        const call = client.Chat();
        const got: string[] = [];
        const status = await new Promise<{ code: number; details: string }>((resolve, reject) => {
          call.on('data', (m: { text: string }) => got.push(m.text));
          call.on('status', resolve);
          call.on('error', reject);
          call.write({ text: 'a' });
          // The client goes on writing after the server's status: those messages are refused by the reset, quietly.
          const timer = setInterval(() => call.write({ text: 'more' }), 5);
          call.on('status', () => clearInterval(timer));
        });
        expect(status.code).toBe(grpc.status.OK);
        expect(got).toEqual(['done:a']);
      }
    } finally {
      client.close();
    }
  });
});

describe('frames on closed streams (RFC 9113 §5.1)', () => {
  /** A connection with one GET on stream 1 answered whole (both sides ended, the stream closed). */
  async function afterCompleteGet(): Promise<RawH2Client> {
    const c = new RawH2Client(port);
    await c.ready;
    await c.write(headersFrames(1, requestBlock('h2up', '/done'), true));
    for (let i = 0; i < 200 && c.dataBytes === 0; i++) await sleep(10);
    expect(c.responses.has(1)).toBe(true);
    return c;
  }

  it('DATA or HEADERS after the client\'s own END_STREAM is a connection error STREAM_CLOSED', async () => {
    for (const late of [frame(T.DATA, 0, 1, Buffer.from('late')), headersFrames(1, headerBlock([['x-late', '1']]), true)]) {
      const c = await afterCompleteGet();
      try {
        await c.write(late);
        expect(await c.refused(3000)).toBe(true);
        expect(c.goaway?.code).toBe(5); // STREAM_CLOSED
      } finally {
        c.destroy();
      }
    }
  });

  it('DATA after the client\'s own RST_STREAM gets RST_STREAM STREAM_CLOSED; the connection serves on', async () => {
    const c = new RawH2Client(port);
    try {
      await c.ready;
      // An upload the upstream holds until its end, cancelled by the client, then DATA on it.
      await c.write(headersFrames(1, requestBlock('h2up', '/held', 'POST'), false));
      await sleep(50);
      await c.write(frame(T.RST_STREAM, 0, 1, Buffer.from([0, 0, 0, ERR.CANCEL])));
      await c.write(frame(T.DATA, 0, 1, Buffer.from('late')));
      for (let i = 0; i < 200 && !c.resets.has(1); i++) await sleep(10);
      expect(c.resets.get(1)).toBe(5); // STREAM_CLOSED
      await c.write(headersFrames(3, requestBlock('h2up', '/after'), true));
      for (let i = 0; i < 200 && !c.responses.has(3); i++) await sleep(10);
      expect(c.statusByte.get(3)).toBe(0x88);
      expect(c.goaway).toBeNull();
    } finally {
      c.destroy();
    }
  });
});

describe('frames on closed streams, upstream side', () => {
  it('an upstream that sends DATA after its END_STREAM: the response went out whole, the connection ends with STREAM_CLOSED', async () => {
    const r = await request(port, { host: 'latedata', path: '/' });
    expect(r.status).toBe(200);
    expect(r.body).toBe('whole');
    for (let i = 0; i < 200 && lateDataGoaways.length === 0; i++) await sleep(10);
    expect(lateDataGoaways).toEqual([5]); // STREAM_CLOSED
  });
});

/** pillion_local_replies_total{reason="bad_request"} from the admin port. */
async function badRequests(): Promise<number> {
  const text = (await request(proxy.adminPort, { path: '/metrics' })).body;
  return Number(/pillion_local_replies_total\{reason="bad_request"\} (\d+)/.exec(text)?.[1] ?? 0);
}

/** One raw HTTP/1.1 request; resolves with what the proxy answered (latin1). */
function rawH1(bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => resolve(text));
    socket.setTimeout(5_000, () => socket.destroy());
    socket.write(bytes);
  });
}

describe('control characters in field values (nghttp2_check_header_value_rfc9113, as Envoy)', () => {
  const CTLS = [0x01, 0x08, 0x0b, 0x0c, 0x1b, 0x1f, 0x7f];

  it('an HTTP/2 request with a CTL (not HTAB) or DEL in a header, trailer or pseudo-header value gets RST_STREAM PROTOCOL_ERROR, counted as bad_request; nothing reaches the upstream; the connection serves on', async () => {
    const before = await badRequests();
    const seenBefore = h1upSeen.length;
    const c = new RawH2Client(port);
    try {
      await c.ready;
      let id = 1;
      const refused: number[] = [];
      for (const ctl of CTLS) {
        await c.write(headersFrames(id, requestBlock('h1up', '/ctl-header', 'GET', [['x-a', `a${String.fromCharCode(ctl)}b`]]), true));
        refused.push(id);
        id += 2;
      }
      // Pseudo headers: :path with a CTL or SP, :authority with a CTL or SP.
      for (const [authority, path] of [['h1up', '/ctl\x01path'], ['h1up', '/ctl path'], ['h1\x7fup', '/ctl-authority'], ['h1 up', '/ctl-authority']]) {
        await c.write(headersFrames(id, requestBlock(authority!, path!), true));
        refused.push(id);
        id += 2;
      }
      for (const sid of refused) {
        expect(await eventually(() => c.resets.get(sid), (code) => code !== undefined, 3_000), `stream ${sid}`).toBe(ERR.PROTOCOL_ERROR);
        expect(c.responses.has(sid), `stream ${sid}: no response`).toBe(false);
      }
      // Trailers with a CTL: the stream is reset; the upstream never gets a complete request.
      const trailerId = id;
      await c.write(headersFrames(trailerId, requestBlock('h1up', '/ctl-trailer', 'POST'), false));
      await c.write(frame(T.DATA, 0, trailerId, Buffer.from('body')));
      await c.write(headersFrames(trailerId, headerBlock([['x-checksum', 'a\x1bb']]), true));
      expect(await eventually(() => c.resets.get(trailerId), (code) => code !== undefined, 3_000)).toBe(ERR.PROTOCOL_ERROR);
      // HTAB inside and obs-text pass (RFC 9110 §5.5).
      const okId = trailerId + 2;
      await c.write(headersFrames(okId, requestBlock('h1up', '/ctl-ok', 'GET', [['x-a', 'a\tb\xe9\xff']]), true));
      expect(await eventually(() => c.statusByte.get(okId), (b) => b !== undefined, 3_000)).toBe(0x88);
      expect(c.goaway).toBeNull();
      const seen = h1upSeen.slice(seenBefore);
      expect(seen.map((r) => r.path).filter((p) => p !== '/ctl-trailer')).toEqual(['/ctl-ok']);
      expect(seen.find((r) => r.path === '/ctl-ok')?.value).toBe('a\tb\xe9\xff');
      expect(await badRequests()).toBe(before + refused.length + 1);
    } finally {
      c.destroy();
    }
  });

  it('nghttp (an independent client) sending a CTL in a header gets RST_STREAM PROTOCOL_ERROR', async () => {
    const seenBefore = h1upSeen.length;
    const out = await new Promise<string>((resolve) => {
      const child = spawn('nghttp', ['-v', '-t', '5', '-H', ':authority: h1up', '-H', 'x-a: a\x01b', `http://127.0.0.1:${port}/ctl-nghttp`]);
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.stderr.on('data', (d: Buffer) => (text += d.toString()));
      child.on('error', (err) => resolve(String(err)));
      child.on('close', () => resolve(text));
    });
    expect(out).toMatch(/recv RST_STREAM frame <length=4, flags=0x00, stream_id=\d+>\s+\(error_code=PROTOCOL_ERROR\(0x01\)\)/);
    expect(h1upSeen.slice(seenBefore)).toEqual([]);
  });

  it('an HTTP/1.1 request with the same bytes is refused by llhttp\'s strict mode: 400 bad_request, nothing upstream; obs-text and HTAB pass', async () => {
    const seenBefore = h1upSeen.length;
    for (const ctl of CTLS) {
      const head = Buffer.concat([Buffer.from('GET /ctl-h1 HTTP/1.1\r\nhost: h1up\r\nx-a: a', 'latin1'), Buffer.from([ctl]), Buffer.from('b\r\n\r\n')]);
      const text = await rawH1(head);
      expect(text, `0x${ctl.toString(16)}`).toMatch(/^HTTP\/1\.1 400 /);
      expect(text).toContain('x-pillion-reason: bad_request');
    }
    expect(h1upSeen.slice(seenBefore)).toEqual([]);
    const ok = await rawH1(Buffer.from('GET /ctl-h1-ok HTTP/1.1\r\nhost: h1up\r\nconnection: close\r\nx-a: a\tb\xe9\xff\r\n\r\n', 'latin1'));
    expect(ok).toMatch(/^HTTP\/1\.1 200 /);
    expect(h1upSeen.slice(seenBefore)).toEqual([{ path: '/ctl-h1-ok', value: 'a\tb\xe9\xff' }]);
  });

  it('an HTTP/2 upstream\'s response head with a CTL: 502 upstream_protocol_error (as llhttp\'s refusals), RST_STREAM PROTOCOL_ERROR to it', async () => {
    const resetsBefore = ctlUpResets.length;
    const r = await request(port, { host: 'ctlup', path: '/ctl-head' });
    expect(r.status, r.body).toBe(502);
    expect(r.headers['x-pillion-reason']).toBe('upstream_protocol_error');
    expect(r.headers['x-bad']).toBeUndefined();
    expect(r.headers['x-ok']).toBeUndefined();
    expect(await eventually(() => ctlUpResets.slice(resetsBefore), (l) => l.length > 0, 3_000)).toEqual([ERR.PROTOCOL_ERROR]);
    // HTTP/2 client: the same.
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const h = await h2request(session, { ':path': '/ctl-head', ':authority': 'ctlup' });
      expect(h.headers[':status']).toBe(502);
      expect(h.headers['x-pillion-reason']).toBe('upstream_protocol_error');
    } finally {
      session.close();
    }
  });

  it('an HTTP/2 upstream\'s trailers with a CTL: the response already going out is broken off, never passed as complete', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const outcome = await new Promise<{ ended: boolean; code: number; trailers: unknown }>((resolve) => {
        const stream = session.request({ ':path': '/ctl-trailers', ':authority': 'ctlup' });
        let trailers: unknown = null;
        stream.on('trailers', (t) => (trailers = t));
        stream.on('data', () => {});
        stream.on('error', () => {});
        stream.on('close', () => resolve({ ended: stream.readableEnded && stream.rstCode === 0, code: stream.rstCode ?? -1, trailers }));
      });
      expect(outcome.ended).toBe(false);
      expect(outcome.code).not.toBe(0);
      expect(outcome.trailers).toBeNull();
    } finally {
      session.close();
    }
  });
});

describe('a request\'s host field is an authority (nghttp2_check_authority on the server side, as :authority)', () => {
  const block = (host: string, authority?: string): Buffer =>
    headerBlock([[':method', 'GET'], [':scheme', 'http'], ...(authority === undefined ? [] : [[':authority', authority] as const]), [':path', '/host-check'], ['host', host]]);

  it('a host with SP, a delimiter or obs-text gets RST_STREAM PROTOCOL_ERROR, counted as bad_request, nothing upstream; a good one routes', async () => {
    const before = await badRequests();
    const seenBefore = h1upSeen.length;
    const c = new RawH2Client(port);
    try {
      await c.ready;
      let id = 1;
      const refused: number[] = [];
      // Without :authority, host stands for it (RFC 9113 §8.3.1); with it, host is still checked (as nghttp2 does).
      for (const [host, authority] of [['h1 up', undefined], ['h1up/x', undefined], ['h1up?x', undefined], ['h1up#x', undefined], ['h1"up', undefined], ['h1up\xe9', undefined], ['h1 up', 'h1up']] as const) {
        await c.write(headersFrames(id, block(host, authority), true));
        refused.push(id);
        id += 2;
      }
      for (const sid of refused) {
        expect(await eventually(() => c.resets.get(sid), (code) => code !== undefined, 3_000), `stream ${sid}`).toBe(ERR.PROTOCOL_ERROR);
        expect(c.responses.has(sid), `stream ${sid}: no response`).toBe(false);
      }
      for (const host of ['h1up', 'h1up:8080']) {
        await c.write(headersFrames(id, block(host), true));
        expect(await eventually(() => c.statusByte.get(id), (b) => b !== undefined, 3_000), host).toBe(0x88);
        id += 2;
      }
      expect(c.goaway).toBeNull();
      expect(h1upSeen.slice(seenBefore).map((r) => r.path)).toEqual(['/host-check', '/host-check']);
      expect(await badRequests()).toBe(before + refused.length);
    } finally {
      c.destroy();
    }
  });
});
