// A hostile or odd HTTP/2 upstream, hand-written frame by frame: a GOAWAY that refuses a stream unprocessed (a
// bodyless request is sent again on a fresh connection, unseen by the client), a response head past the
// proxy's limits (decoded size, field count, a CONTINUATION flood), floods of PING and SETTINGS, and DATA far
// beyond the window the proxy gave. Each time: the proxy lives, the request fails cleanly (503 upstream_reset, 502
// upstream_protocol_error for a head too large, or a cut response once one had started), nothing stays in flight,
// and the next requests work.
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { request } from '../helpers/client.js';
import { startAbuseSidecar, type AbuseSidecar, type AbuseSidecarOptions } from './sidecar.js';
import { baseline, ERR, eventually, F, frame, goaway, ping, settings, settleToBaseline, sleep, startRawH2Server, T, type Baseline, type RawH2Server } from './util.js';

const ROUTE_TIMEOUT_MS = 3_000;

type Mode =
  | 'ok'
  | 'goaway-refuse'
  | 'goaway-refuse-always'
  | 'huge-head'
  | 'many-fields'
  | 'continuation-flood'
  | 'control-flood'
  | 'data-beyond-window'
  | 'hop-by-hop'
  | 'connection-field'
  | 'informational-end-stream'
  | 'status-101'
  | 'cl-short'
  | 'cl-long'
  | 'cl-short-trailers';

const STATUS_200 = Buffer.from([0x88]); // HPACK static table entry 8, `:status: 200`

/** HPACK: literal with incremental indexing, new name (RFC 7541 §6.2.1); lengths < 127 or 2-byte forms. */
function hpackIndexedLiteral(name: string, value: string): Buffer {
  const str = (s: string): Buffer => {
    const b = Buffer.from(s, 'latin1');
    if (b.length < 127) return Buffer.concat([Buffer.from([b.length]), b]);
    const rest = b.length - 127;
    return Buffer.concat([Buffer.from([127, (rest % 128) | 0x80, Math.floor(rest / 128)]), b]);
  };
  return Buffer.concat([Buffer.from([0x40]), str(name), str(value)]);
}

/** :status 200, then one field put in the dynamic table (index 62) and referred to `times` more times. */
function repeatedFieldBlock(value: string, times: number): Buffer {
  return Buffer.concat([STATUS_200, hpackIndexedLiteral('x-big', value), Buffer.alloc(times, 0x80 | 62)]);
}

interface Upstream extends RawH2Server {
  mode: Mode;
  /** HEADERS frames (requests) seen, over all connections. */
  requests: number;
  /** Error codes of RST_STREAM and GOAWAY frames the proxy sent. */
  resets: number[];
  goaways: number[];
}

async function startUpstream(): Promise<Upstream> {
  const respond = (socket: net.Socket, stream: number): void => {
    const mode = state.mode;
    switch (mode) {
      case 'ok':
        socket.write(Buffer.concat([frame(T.HEADERS, F.END_HEADERS, stream, STATUS_200), frame(T.DATA, F.END_STREAM, stream, Buffer.from('ok'))]));
        return;
      case 'goaway-refuse':
      case 'goaway-refuse-always':
        // RFC 9113 §6.8: streams above the last stream id were not processed. This connection serves no more.
        socket.write(goaway(Math.max(0, stream - 2)));
        if (mode === 'goaway-refuse') state.mode = 'ok';
        return;
      case 'huge-head':
        // ~100 KiB once decoded (past the proxy's 64 KiB), 100 bytes on the wire.
        socket.write(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, stream, repeatedFieldBlock('v'.repeat(1_000), 100)));
        return;
      case 'many-fields':
        socket.write(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, stream, repeatedFieldBlock('v', 300)));
        return;
      case 'continuation-flood': {
        const parts = [frame(T.HEADERS, 0, stream, STATUS_200)];
        for (let i = 0; i < 500; i++) parts.push(frame(T.CONTINUATION, 0, stream));
        socket.write(Buffer.concat(parts));
        return;
      }
      case 'control-flood': {
        const parts: Buffer[] = [];
        for (let i = 0; i < 20_000; i++) parts.push(ping(i));
        for (let i = 0; i < 2_000; i++) parts.push(settings());
        parts.push(frame(T.HEADERS, F.END_HEADERS, stream, STATUS_200), frame(T.DATA, F.END_STREAM, stream, Buffer.from('ok')));
        socket.write(Buffer.concat(parts));
        return;
      }
      case 'data-beyond-window': {
        // 16 MiB at once, whatever the windows say; the client behind the proxy reads none of it.
        socket.write(frame(T.HEADERS, F.END_HEADERS, stream, STATUS_200));
        const chunk = frame(T.DATA, 0, stream, Buffer.alloc(16_384, 0x61));
        for (let i = 0; i < 1_024; i++) socket.write(chunk);
        return;
      }
      case 'connection-field': {
        const block = Buffer.concat([STATUS_200, hpackIndexedLiteral('connection', 'x-secret'), hpackIndexedLiteral('x-secret', 'leak')]);
        socket.write(Buffer.concat([frame(T.HEADERS, F.END_HEADERS, stream, block), frame(T.DATA, F.END_STREAM, stream, Buffer.from('ok'))]));
        return;
      }
      case 'informational-end-stream':
        // A 1xx that ends the stream: malformed (RFC 9113 §8.1.1), no final response can follow.
        socket.write(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, stream, Buffer.concat([Buffer.from([0x08, 3]), Buffer.from('103')])));
        return;
      case 'status-101':
        // No Upgrade in HTTP/2 (RFC 9113 §8.6): a 101 is malformed.
        socket.write(frame(T.HEADERS, F.END_HEADERS, stream, Buffer.concat([Buffer.from([0x08, 3]), Buffer.from('101')])));
        return;
      case 'cl-short':
      case 'cl-long':
      case 'cl-short-trailers': {
        // A body shorter or longer than content-length (RFC 9113 §8.1.1): found once the head has gone on.
        const block = Buffer.concat([STATUS_200, hpackIndexedLiteral('content-length', mode === 'cl-long' ? '1' : '10')]);
        const end = mode === 'cl-short-trailers' ? [frame(T.DATA, 0, stream, Buffer.from('ok')), frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, stream, hpackIndexedLiteral('x-t', 'v'))] : [frame(T.DATA, F.END_STREAM, stream, Buffer.from('ok'))];
        socket.write(Buffer.concat([frame(T.HEADERS, F.END_HEADERS, stream, block), ...end]));
        return;
      }
      case 'hop-by-hop': {
        const fields = [['trailer', 'x-t'], ['te', 'trailers'], ['host', 'elsewhere'], ['x-kept', 'yes']] as const;
        const block = Buffer.concat([STATUS_200, ...fields.map(([n, v]) => hpackIndexedLiteral(n, v))]);
        socket.write(Buffer.concat([frame(T.HEADERS, F.END_HEADERS, stream, block), frame(T.DATA, F.END_STREAM, stream, Buffer.from('ok'))]));
        return;
      }
    }
  };
  const server = await startRawH2Server((socket, f) => {
    if (f.type === T.RST_STREAM) state.resets.push(f.payload.readUInt32BE(0));
    else if (f.type === T.GOAWAY) state.goaways.push(f.payload.readUInt32BE(4));
    else if (f.type === T.HEADERS && (f.flags & F.END_HEADERS) !== 0) {
      state.requests++;
      respond(socket, f.stream);
    }
  });
  const state: Upstream = Object.assign(server, { mode: 'ok' as Mode, requests: 0, resets: [], goaways: [] });
  return state;
}

let backend: Backend;
let app: Backend;
let upstream: Upstream;
let sidecar: AbuseSidecar;
let sidecarOptions: AbuseSidecarOptions;

beforeAll(async () => {
  backend = await startHttpBackend('backend');
  app = await startHttpBackend('app');
  upstream = await startUpstream();
  const extra = `  - name: hostile\n    ports: [{ port: 8080, protocol: http2 }]\n    endpoints: [{ address: 127.0.0.1, port: ${upstream.port} }]\n    policy: { timeout: ${ROUTE_TIMEOUT_MS}ms, connectTimeout: 1s }\n`;
  // The access log on stdout (the last --access-log wins): a cut response's line names why it was cut.
  sidecarOptions = { backendPort: backend.port, appPort: app.port, backendExtra: extra, extraArgs: ['--access-log', 'stdout'] };
  sidecar = await startAbuseSidecar(sidecarOptions);
});

beforeEach(async () => {
  upstream.mode = 'ok';
  if (sidecar.alive()) return;
  await sidecar.close();
  sidecar = await startAbuseSidecar(sidecarOptions);
});

afterAll(async () => {
  await sidecar?.close();
  await upstream?.close();
  await backend?.close();
  await app?.close();
});

async function expectRecovered(base: Baseline): Promise<void> {
  expect(sidecar.alive(), `sidecar exited; stderr: ${sidecar.proc.stderr}`).toBe(true);
  upstream.mode = 'ok';
  const replies = await Promise.all(Array.from({ length: 5 }, (_, i) => request(sidecar.outbound, { host: 'hostile', path: `/after-${i}` })));
  expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  expect(replies.every((r) => r.body === 'ok')).toBe(true);
  const after = await settleToBaseline(sidecar, base, { fdSlack: 6, ms: 4_000 });
  expect(after.gauges).toEqual({ requests: base.requests, connections: base.connections, upstreamRequests: base.upstreamRequests });
  expect(await sidecar.get()).toBe(200);
}

describe('an HTTP/2 upstream that refuses a stream with GOAWAY', () => {
  it('a bodyless request is sent again on a fresh connection: the client gets its 200', async () => {
    const base = await baseline(sidecar);
    // A connection to be refused on: the request must not simply have gone to a new one first.
    expect((await request(sidecar.outbound, { host: 'hostile', path: '/warm-up' })).status).toBe(200);
    upstream.mode = 'goaway-refuse';
    const connections = upstream.connections;
    const requests = upstream.requests;
    const r = await request(sidecar.outbound, { host: 'hostile', path: '/refused-once' });
    expect(r.status, r.body).toBe(200);
    expect(r.body).toBe('ok');
    expect(upstream.requests - requests, 'the request went out twice').toBe(2);
    expect(upstream.connections - connections, 'the second time on a fresh connection').toBe(1);
    await expectRecovered(base);
  });

  it('refused again, it fails with 503 upstream_reset (once replayed, never more)', async () => {
    const base = await baseline(sidecar);
    upstream.mode = 'goaway-refuse-always';
    const requests = upstream.requests;
    const r = await request(sidecar.outbound, { host: 'hostile', path: '/refused-always' });
    expect(r.status, r.body).toBe(503);
    expect(r.headers['x-pillion-reason']).toBe('upstream_reset');
    expect(r.body).toContain('REFUSED_STREAM');
    expect(upstream.requests - requests).toBe(2);
    await expectRecovered(base);
  });

  it('a request with a body is not replayed by the pool: 503 upstream_reset', async () => {
    const base = await baseline(sidecar);
    upstream.mode = 'goaway-refuse';
    const requests = upstream.requests;
    const r = await request(sidecar.outbound, { host: 'hostile', path: '/refused-post', method: 'POST', body: 'a body' });
    expect(r.status, r.body).toBe(503);
    expect(r.headers['x-pillion-reason']).toBe('upstream_reset');
    expect(upstream.requests - requests).toBe(1);
    await expectRecovered(base);
  });
});

describe('an HTTP/2 upstream that sends hop-by-hop fields', () => {
  it('they are not forwarded; the rest of the head is', async () => {
    upstream.mode = 'hop-by-hop';
    const r = await request(sidecar.outbound, { host: 'hostile', path: '/hop-by-hop' });
    expect(r.status, r.body).toBe(200);
    expect(r.headers['x-kept']).toBe('yes');
    expect(r.headers.trailer).toBeUndefined();
    expect(r.headers.te).toBeUndefined();
    expect(r.headers.host).toBeUndefined();
  });

  it('a connection-specific field makes the response malformed (RFC 9113 §8.2.2): 502 upstream_protocol_error', async () => {
    upstream.mode = 'connection-field';
    const r = await request(sidecar.outbound, { host: 'hostile', path: '/connection-field' });
    expect(r.status, r.body).toBe(502);
    expect(r.headers['x-pillion-reason']).toBe('upstream_protocol_error');
    expect(r.headers['x-secret']).toBeUndefined();
  });
});

describe('an HTTP/2 upstream whose response head is past the limits', () => {
  // A head past the limits is a protocol error (Envoy: UPE, 502); a CONTINUATION flood ends the connection
  // (GOAWAY), a reset of the request as any connection loss is (503).
  for (const [mode, what, status, reason] of [
    ['huge-head', '~100 KiB decoded (64 KiB allowed)', 502, 'upstream_protocol_error'],
    ['many-fields', '300 fields (128 allowed)', 502, 'upstream_protocol_error'],
    ['continuation-flood', 'a CONTINUATION flood', 503, 'upstream_reset'],
  ] as const) {
    it(`${what}: ${status} ${reason} at once, the proxy refuses it to the upstream`, async () => {
      const base = await baseline(sidecar);
      upstream.mode = mode;
      const resets = upstream.resets.length + upstream.goaways.length;
      const started = Date.now();
      const r = await request(sidecar.outbound, { host: 'hostile', path: `/${mode}` });
      expect(r.status, r.body).toBe(status);
      expect(r.headers['x-pillion-reason']).toBe(reason);
      expect(Date.now() - started, 'answered before the route timeout').toBeLessThan(ROUTE_TIMEOUT_MS);
      // RST_STREAM PROTOCOL_ERROR for a head too large, GOAWAY for a flood.
      expect(await eventually(() => upstream.resets.length + upstream.goaways.length, (n) => n > resets, 2_000)).toBeGreaterThan(resets);
      await expectRecovered(base);
    });
  }
});

describe('an HTTP/2 upstream that floods PING and SETTINGS before it answers', () => {
  it('the proxy lives and answers; the flood does not grow it', async () => {
    const base = await baseline(sidecar);
    upstream.mode = 'control-flood';
    const r = await request(sidecar.outbound, { host: 'hostile', path: '/control-flood' });
    // More than 1000 ACKs owed at once (one read's worth of PINGs) ends the connection (GOAWAY ENHANCE_YOUR_CALM).
    expect([200, 503]).toContain(r.status);
    // 20,000 PINGs arrive a few thousand per read: past the per-turn control frame bound, GOAWAY.
    if (r.status === 503) expect(r.headers['x-pillion-reason']).toBe('upstream_reset');
    else expect(r.body).toBe('ok');
    expect((await baseline(sidecar)).rss - base.rss, 'RSS growth, MiB').toBeLessThan(100);
    await expectRecovered(base);
  });
});

describe('an HTTP/2 upstream that sends DATA far beyond the window', () => {
  it('the stream is reset FLOW_CONTROL_ERROR, the proxy buffers no more than its windows, the client sees the response cut', async () => {
    const base = await baseline(sidecar);
    upstream.mode = 'data-beyond-window';
    const resets = upstream.resets.length;
    const goaways = upstream.goaways.length;
    // A client that sends its request and reads nothing: the proxy must stop taking the upstream's DATA.
    const client = net.connect(sidecar.outbound, '127.0.0.1');
    client.on('error', () => {});
    let closed = false;
    client.on('close', () => (closed = true));
    client.write('GET /flood HTTP/1.1\r\nhost: hostile\r\n\r\n');
    client.pause();
    try {
      const flowControl = (): boolean => upstream.resets.slice(resets).includes(3) || upstream.goaways.slice(goaways).includes(3);
      expect(await eventually(flowControl, (v) => v, 8_000), 'RST_STREAM or GOAWAY FLOW_CONTROL_ERROR').toBe(true);
      expect((await baseline(sidecar)).rss - base.rss, 'RSS growth, MiB').toBeLessThan(64);
      client.resume();
      expect(await eventually(() => closed, (v) => v, 5_000), 'the client connection is closed: the response was cut').toBe(true);
    } finally {
      client.destroy();
    }
    await sleep(100);
    await expectRecovered(base);
  });
});

describe('an HTTP/2 upstream whose response is malformed (RFC 9113 §8.1.1)', () => {
  for (const [mode, what] of [
    ['informational-end-stream', 'a 1xx with END_STREAM'],
    ['status-101', 'a 101 (no Upgrade in HTTP/2)'],
  ] as const) {
    it(`${what}: 502 upstream_protocol_error, RST_STREAM PROTOCOL_ERROR to the upstream`, async () => {
      const base = await baseline(sidecar);
      upstream.mode = mode;
      const resets = upstream.resets.length;
      const r = await request(sidecar.outbound, { host: 'hostile', path: `/${mode}` });
      expect(r.status, r.body).toBe(502);
      expect(r.headers['x-pillion-reason']).toBe('upstream_protocol_error');
      expect(await eventually(() => upstream.resets.slice(resets), (l) => l.length > 0, 2_000)).toEqual([ERR.PROTOCOL_ERROR]);
      await expectRecovered(base);
    });
  }

  /** One HTTP/1.1 request on a raw socket: everything the proxy sent until it closed the connection. */
  function rawH1(path: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const c = net.connect(sidecar.outbound, '127.0.0.1');
      const chunks: Buffer[] = [];
      const timer = setTimeout(() => {
        c.destroy();
        reject(new Error(`the connection stayed open; got ${Buffer.concat(chunks).toString('latin1')}`));
      }, 5_000);
      c.on('error', () => {});
      c.on('data', (b: Buffer) => chunks.push(b));
      c.on('close', () => {
        clearTimeout(timer);
        resolve(Buffer.concat(chunks).toString('latin1'));
      });
      c.write(`GET ${path} HTTP/1.1\r\nhost: hostile\r\n\r\n`);
    });
  }

  for (const [mode, what] of [
    ['cl-short', 'a body shorter than its content-length'],
    ['cl-long', 'a body longer than its content-length'],
    ['cl-short-trailers', 'a body shorter than its content-length, then trailers'],
  ] as const) {
    it(`${what}: the response already started is cut for HTTP/1.1 and HTTP/2 clients, RST_STREAM PROTOCOL_ERROR upstream`, async () => {
      const base = await baseline(sidecar);
      upstream.mode = mode;
      const resets = upstream.resets.length;
      // HTTP/1.1: the connection closes before the body the head announced is complete (keep-alive would hold it open).
      const text = await rawH1(`/${mode}`);
      // The head is held until the first body bytes go out: a cut before them closes with nothing sent.
      if (text !== '') {
        expect(text).toMatch(/^HTTP\/1\.1 200 /);
        const sep = text.indexOf('\r\n\r\n');
        const headText = text.slice(0, sep).toLowerCase();
        const body = text.slice(sep + 4);
        const cl = /\r\ncontent-length: *(\d+)/.exec(headText);
        if (cl !== null) expect(body.length, 'a short body').toBeLessThan(Number(cl[1]));
        else expect(body.endsWith('0\r\n\r\n'), 'no terminating chunk').toBe(false);
      }
      // Cut for a protocol error (Envoy: UPE), not for a reset (UR).
      const line = await sidecar.proc.waitForLine((l) => l.path === `/${mode}`, 3_000);
      expect(line).toMatchObject({ status: 200, response_flags: 'UPE', x_pillion_reason: 'upstream_protocol_error' });
      expect(await eventually(() => upstream.resets.slice(resets), (l) => l.length > 0, 2_000)).toEqual([ERR.PROTOCOL_ERROR]);
      // HTTP/2: the stream is reset, not ended.
      const session = http2.connect(`http://127.0.0.1:${sidecar.outbound}`);
      session.on('error', () => {});
      try {
        const outcome = await new Promise<{ status: number; ended: boolean; code: number }>((resolve) => {
          const stream = session.request({ ':path': `/${mode}-h2`, ':authority': 'hostile' });
          let status = 0;
          stream.on('response', (h) => (status = Number(h[':status'])));
          stream.on('data', () => {});
          stream.on('error', () => {});
          stream.on('close', () => resolve({ status, ended: stream.readableEnded && stream.rstCode === 0, code: stream.rstCode ?? -1 }));
        });
        expect(outcome.status).toBe(200);
        expect(outcome.ended, 'not completed as if fine').toBe(false);
        expect(outcome.code).not.toBe(0);
      } finally {
        session.close();
      }
      expect(await sidecar.proc.waitForLine((l) => l.path === `/${mode}-h2`, 3_000)).toMatchObject({ x_pillion_reason: 'upstream_protocol_error' });
      await expectRecovered(base);
    });
  }
});
