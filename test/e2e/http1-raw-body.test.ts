// Large response bodies of known length pass around the HTTP/1 parser (read raw into reused buffers, see
// readRawBody in src/upstream/http1-pool.ts): byte-exact delivery around the size threshold, keep-alive reuse
// after such a body, bytes the upstream sends after it, backpressure to a stop-and-go reader, aborts on either
// side, bodiless responses that announce a length, and the access log's byte count. The upstream is a raw TCP
// server, so each test decides what goes in which segment.
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ABORT_DISCARD_MS, RAW_BODY_MIN_BYTES } from '../../src/upstream/http1-pool.js';
import { rawBodyStats } from '../../src/upstream/raw-body-stats.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';

/** The most the kernel autotunes one socket's receive or send buffer to (tcp_rmem / tcp_wmem maxima). */
function kernelBufferMax(which: 'tcp_rmem' | 'tcp_wmem', fallback: number): number {
  try {
    return Number(readFileSync(`/proc/sys/net/ipv4/${which}`, 'utf8').trim().split(/\s+/)[2]) || fallback;
  } catch {
    return fallback;
  }
}
/**
 * What may sit in kernel buffers while the client does not read (two hops, each a send and a receive buffer
 * autotuned up to the sysctl maxima: 72 MiB with this machine's 32 MiB tcp_rmem), plus the proxy's own queues.
 * A bound of 24 MiB held on a quiet machine but not under load, where autotuning grew the buffers further.
 */
const MAX_IN_FLIGHT = 2 * (kernelBufferMax('tcp_rmem', 6 << 20) + kernelBufferMax('tcp_wmem', 4 << 20)) + (4 << 20);
/** Well past what the kernel can hold: a proxy that read the upstream without bound would be that far ahead. */
const HUGE = MAX_IN_FLIGHT + (64 << 20);

let upstream: net.Server;
let upstreamPort = 0;
/** Upstream connections accepted, and the sockets open now. */
let accepted = 0;
const open = new Set<net.Socket>();
/** Sockets of /endless responses, to see the proxy close them. */
const endless: net.Socket[] = [];
let hugeWritten = 0;
let extraSocket: net.Socket | null = null;
let stalledSocket: net.Socket | null = null;
let flakyHits = 0;
let proxy: RunningProxy;
let logDir: string;

const bodies = new Map<number, Buffer>();
function bodyOf(size: number): Buffer {
  let body = bodies.get(size);
  if (body === undefined) {
    body = randomBytes(size);
    bodies.set(size, body);
  }
  return body;
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Bytes whose value says where they are: a reordered, repeated or overwritten chunk cannot pass for another. */
function pattern(offset: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) buf[i] = ((offset + i) * 2654435761) >>> 24;
  return buf;
}

function head(status: string, length: number): string {
  return `HTTP/1.1 ${status}\r\ncontent-length: ${length}\r\ncontent-type: application/octet-stream\r\n\r\n`;
}

/** Answers one request head on `socket` (requests carry no body here). */
function answer(socket: net.Socket, method: string, path: string): void {
  const [, kind = '', arg = '0'] = path.split('?')[0]!.split('/');
  const size = Number(arg);
  if (kind === 'size') {
    // Head and body in one write: the head's read carries the start of the body.
    socket.write(Buffer.concat([Buffer.from(head('200 OK', size)), method === 'HEAD' ? Buffer.alloc(0) : bodyOf(size)]));
  } else if (kind === 'thenclose') {
    // A keep-alive answer, then the upstream closes the connection while it idles in the proxy's pool.
    socket.write(Buffer.concat([Buffer.from(head('200 OK', size)), bodyOf(size)]), () => setTimeout(() => socket.end(), 50));
  } else if (kind === 'split') {
    // The head alone, then the body in pieces of odd sizes.
    socket.write(head('200 OK', size));
    const body = bodyOf(size);
    for (let at = 0; at < size; at += 70_001) socket.write(body.subarray(at, Math.min(size, at + 70_001)));
  } else if (kind === 'extra') {
    // A second response nobody asked for, in the same segment as the end of the body.
    extraSocket = socket;
    socket.write(Buffer.concat([Buffer.from(head('200 OK', size)), bodyOf(size), Buffer.from(head('200 OK', 5) + 'extra')]));
  } else if (kind === 'cut') {
    // Half of the body, then the connection is gone.
    socket.write(Buffer.concat([Buffer.from(head('200 OK', size)), bodyOf(size).subarray(0, size >> 1)]), () => setTimeout(() => socket.destroy(), 50));
  } else if (kind === 'stall') {
    // Half of the body, then nothing more.
    stalledSocket = socket;
    socket.write(Buffer.concat([Buffer.from(head('200 OK', size)), bodyOf(size).subarray(0, size >> 1)]));
  } else if (kind === 'flaky') {
    // A 503 with a large body first (retried: its body is never read), then the answer.
    socket.write(Buffer.concat([Buffer.from(head(flakyHits++ % 2 === 0 ? '503 Service Unavailable' : '200 OK', size)), bodyOf(size)]));
  } else if (kind === 'close') {
    // The last response on this connection.
    socket.write(Buffer.concat([Buffer.from(head('200 OK', size).replace('\r\n\r\n', '\r\nconnection: close\r\n\r\n')), bodyOf(size)]));
  } else if (kind === 'nobody') {
    // 204 / 304 say a length but have no body: the next response follows at once, in the same segment.
    socket.write(head(`${size} X`, 1 << 20) + head('200 OK', 4) + 'next');
  } else if (kind === 'huge') {
    // As fast as the connection takes it; or (a piece size given) one small piece per turn of the event loop,
    // so that the proxy's reads are short and go on while a write of an earlier one is still pending.
    socket.write(head('200 OK', HUGE));
    let offset = 0;
    const pump = (): void => {
      while (offset < HUGE && !socket.destroyed) {
        const n = Math.min(size || 100_003, HUGE - offset);
        const ok = socket.write(pattern(offset, n));
        offset += n;
        hugeWritten = offset;
        if (!ok) return void socket.once('drain', pump);
        if (size > 0) return void setImmediate(pump);
      }
    };
    pump();
  } else if (kind === 'endless') {
    endless.push(socket);
    socket.write(head('200 OK', 1 << 30));
    const piece = Buffer.alloc(64 * 1024, 'e');
    const pump = (): void => {
      while (!socket.destroyed) if (!socket.write(piece)) return void socket.once('drain', pump);
    };
    pump();
  } else {
    socket.write(head('404 Not Found', 0));
  }
}

beforeAll(async () => {
  upstream = net.createServer((socket) => {
    accepted++;
    open.add(socket);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => open.delete(socket));
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const [method = '', path = ''] = pending.slice(0, pending.indexOf('\r\n')).split(' ');
        pending = pending.slice(end + 4);
        answer(socket, method, path);
      }
    });
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  upstreamPort = (upstream.address() as net.AddressInfo).port;
  logDir = mkdtempSync(join(tmpdir(), 'pillion-raw-body-'));
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: big
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${upstreamPort} }]
  - name: bigslow
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${upstreamPort} }]
    policy: { timeout: 400ms }
  - name: bigretry
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${upstreamPort} }]
    policy: { retries: { attempts: 1, retryOn: [503], backoff: { base: 2ms } } }
`,
    { service: 'client', accessLog: join(logDir, 'access.log') },
  );
});

afterAll(async () => {
  await proxy?.close();
  for (const socket of open) socket.destroy();
  await new Promise((r) => upstream?.close(r));
  if (logDir !== undefined) rmSync(logDir, { recursive: true, force: true });
});

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function get(path: string, agent: http.Agent | false = false, method = 'GET', host = 'big'): Promise<Got> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxy.port('outbound'), path, method, headers: { host }, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(what: string, check: () => boolean, ms = 3_000, poll?: () => Promise<unknown>): Promise<void> {
  for (const deadline = Date.now() + ms; (await poll?.(), !check()); ) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let lastCount = -1;
/** The proxy's open connections to the `big` cluster (pillion_upstream_connections_active). */
async function upstreamConnections(): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  lastCount = Number(/^pillion_upstream_connections_active\{cluster="big\.default:8080"\} (\d+)$/m.exec(text)?.[1] ?? NaN);
  return lastCount;
}

/** The access log line of the request to `path`, waiting for the asynchronous write. */
async function logLine(path: string): Promise<Record<string, string | number>> {
  const file = join(logDir, 'access.log');
  for (let i = 0; i < 100; i++) {
    if (existsSync(file)) {
      const lines = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, string | number>);
      const found = lines.find((l) => l.path === path);
      if (found !== undefined) return found;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no access log line for ${path}`);
}

describe('HTTP/1 response bodies read around the parser', () => {
  it('delivers bodies of every size around the threshold byte for byte, on one keep-alive connection each side', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sizes = [RAW_BODY_MIN_BYTES - 1, RAW_BODY_MIN_BYTES, RAW_BODY_MIN_BYTES + 1, 200_003, (1 << 20) + 7, 3 << 20];
    const before = { ...rawBodyStats };
    const acceptedBefore = accepted;
    try {
      for (const kind of ['size', 'split']) {
        for (const size of sizes) {
          const got = await get(`/${kind}/${size}`, agent);
          expect(got.status).toBe(200);
          expect(got.headers['content-length']).toBe(String(size));
          expect(got.body.length).toBe(size);
          expect(sha(got.body)).toBe(sha(bodyOf(size)));
        }
        // A small request after the large bodies on the same connections.
        expect((await get('/size/10', agent)).body.equals(bodyOf(10))).toBe(true);
      }
    } finally {
      agent.destroy();
    }
    // Every body from the threshold up went around the parser, the one below it did not.
    expect(rawBodyStats.responses - before.responses).toBe(2 * (sizes.length - 1));
    expect(rawBodyStats.bytes - before.bytes).toBe(2 * sizes.slice(1).reduce((a, b) => a + b, 0));
    // One upstream connection carried all of them: each was handed back to the pool in step.
    expect(accepted - acceptedBefore).toBe(1);
  });

  it('delivers them byte for byte on many keep-alive connections at once (each reusing pooled upstream connections)', async () => {
    const raw = rawBodyStats.responses;
    const sizes = [(1 << 20) + 1, 300_007, 2 << 20, RAW_BODY_MIN_BYTES + 5, 700_001];
    const agents = Array.from({ length: 8 }, () => new http.Agent({ keepAlive: true, maxSockets: 1 }));
    try {
      await Promise.all(
        agents.map(async (agent, i) => {
          for (let round = 0; round < 6; round++) {
            const size = sizes[(i + round) % sizes.length]!;
            const got = await get(`/split/${size}`, agent);
            expect(got.body.length).toBe(size);
            expect(sha(got.body)).toBe(sha(bodyOf(size)));
          }
        }),
      );
    } finally {
      for (const agent of agents) agent.destroy();
    }
    expect(rawBodyStats.responses).toBe(raw + 48);
  });

  // Not a check that a chunk nghttp2 still holds is never read into again: each 64 KiB chunk is over the stream's
  // 16 KiB high-water mark, so the pool waits for 'drain' (all written) before it reads again, and this passes with
  // H2Downstream.lastWriteFlushed() returning true as well.
  it('delivers them byte for byte to an HTTP/2 client', async () => {
    const raw = rawBodyStats.responses;
    const session = http2.connect(`http://127.0.0.1:${proxy.port('outbound')}`);
    session.on('error', () => {});
    try {
      for (const size of [(1 << 20) + 5, 3 << 20]) {
        const body = await new Promise<Buffer>((resolve, reject) => {
          const stream = session.request({ ':path': `/size/${size}`, ':authority': 'big' });
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('end', () => resolve(Buffer.concat(chunks)));
          stream.on('error', reject);
        });
        expect(body.length).toBe(size);
        expect(sha(body)).toBe(sha(bodyOf(size)));
      }
    } finally {
      session.close();
    }
    expect(rawBodyStats.responses).toBe(raw + 2);
  });

  it('counts the body in the access log and the byte metrics', async () => {
    const raw = rawBodyStats.responses;
    const size = (1 << 20) + 3;
    expect((await get(`/size/${size}?log`)).body.length).toBe(size);
    const line = await logLine(`/size/${size}?log`);
    expect(line.status).toBe(200);
    expect(line.bytes_sent).toBe(size);
    expect(line.response_flags).toBe('-');
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    expect(Number(/^pillion_upstream_http1_raw_bodies_total (\d+)$/m.exec(metrics)?.[1])).toBe(rawBodyStats.responses);
    expect(Number(/^pillion_upstream_http1_raw_body_bytes_total (\d+)$/m.exec(metrics)?.[1])).toBe(rawBodyStats.bytes);
    // The body went around the parser.
    expect(rawBodyStats.responses).toBe(raw + 1);
  });

  it('notices the upstream closing a pooled connection after a large body, and answers the next request on a new one', async () => {
    const raw = rawBodyStats.responses;
    const size = 400_009;
    const first = await get(`/thenclose/${size}`);
    expect(sha(first.body)).toBe(sha(bodyOf(size)));
    const pooled = await upstreamConnections();
    // The FIN reaches the reader under the parser (the socket's raw reader stays installed): the connection
    // leaves the pool instead of failing the next request.
    await until('the proxy to drop the closed upstream connection', () => lastCount === pooled - 1, 3_000, upstreamConnections);
    const next = await get(`/size/${size}`);
    expect(next.status).toBe(200);
    expect(sha(next.body)).toBe(sha(bodyOf(size)));
    expect(rawBodyStats.responses).toBe(raw + 2);
  });

  it('answers pipelined requests in order after a large body, from one segment of the client', async () => {
    const raw = rawBodyStats.responses;
    const size = 300_001;
    const client = net.connect(proxy.port('outbound'), '127.0.0.1');
    client.on('error', () => {});
    const chunks: Buffer[] = [];
    client.on('data', (c: Buffer) => chunks.push(c));
    const closed = new Promise((r) => client.on('close', r));
    client.write(`GET /size/${size} HTTP/1.1\r\nhost: big\r\n\r\nGET /size/7 HTTP/1.1\r\nhost: big\r\nconnection: close\r\n\r\n`);
    await closed;
    const all = Buffer.concat(chunks);
    const firstBody = all.indexOf('\r\n\r\n') + 4;
    expect(all.subarray(0, 12).toString()).toBe('HTTP/1.1 200');
    expect(sha(all.subarray(firstBody, firstBody + size))).toBe(sha(bodyOf(size)));
    const second = all.subarray(firstBody + size);
    expect(second.subarray(0, 12).toString()).toBe('HTTP/1.1 200');
    expect(second.subarray(second.indexOf('\r\n\r\n') + 4).equals(bodyOf(7))).toBe(true);
    // The body went around the parser.
    expect(rawBodyStats.responses).toBe(raw + 1);
  });

  it('does not pass on or reuse after bytes the upstream sent past the body in the same segment', async () => {
    const raw = rawBodyStats.responses;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const size = 500_000;
    try {
      const got = await get(`/extra/${size}`, agent);
      expect(got.body.length).toBe(size);
      expect(sha(got.body)).toBe(sha(bodyOf(size)));
      // The upstream connection that was out of step is closed, not pooled; the next request on the same client
      // connection gets its own answer, not the stray "extra" one.
      const socket = extraSocket!;
      await until('the proxy to close the out-of-step upstream connection', () => socket.destroyed || socket.readableEnded);
      const next = await get('/size/12', agent);
      expect(next.body.equals(bodyOf(12))).toBe(true);
    } finally {
      agent.destroy();
    }
    // The body went around the parser.
    expect(rawBodyStats.responses).toBe(raw + 1);
  });

  it('sends no body for HEAD, 204 and 304 that announce a length, and keeps both connections in step', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const before = rawBodyStats.responses;
    try {
      const size = 1 << 20;
      const headReply = await get(`/size/${size}`, agent, 'HEAD');
      expect(headReply.status).toBe(200);
      expect(headReply.headers['content-length']).toBe(String(size));
      expect(headReply.body.length).toBe(0);
      expect((await get('/size/9', agent)).body.equals(bodyOf(9))).toBe(true);
      for (const status of [204, 304]) {
        // The upstream's next response (to no request) follows the bodiless one in the same segment: were the
        // announced length read as a body, the proxy would wait for it and the client would hang.
        const reply = await get(`/nobody/${status}`, agent);
        expect(reply.status).toBe(status);
        expect(reply.body.length).toBe(0);
        expect((await get('/size/11', agent)).body.equals(bodyOf(11))).toBe(true);
      }
    } finally {
      agent.destroy();
    }
    expect(rawBodyStats.responses).toBe(before);
  });

  it.each([
    ['in full reads', 0],
    ['in short reads', 40_009],
  ])('holds the upstream back while a stop-and-go client is not reading, and delivers every byte in order (%s)', async (_what, piece) => {
    const raw = rawBodyStats.responses;
    hugeWritten = 0;
    const client = net.connect(proxy.port('outbound'), '127.0.0.1');
    client.on('error', () => {});
    client.write(`GET /huge/${piece} HTTP/1.1\r\nhost: big\r\nconnection: close\r\n\r\n`);
    let headDone = false;
    let pendingHead = Buffer.alloc(0);
    let offset = 0;
    let mismatch = -1;
    let maxAhead = 0;
    const done = new Promise<void>((resolve) => client.on('close', () => resolve()));
    client.on('data', (chunk: Buffer) => {
      if (!headDone) {
        pendingHead = Buffer.concat([pendingHead, chunk]);
        const end = pendingHead.indexOf('\r\n\r\n');
        if (end < 0) return;
        headDone = true;
        chunk = pendingHead.subarray(end + 4);
      }
      if (mismatch < 0 && !chunk.equals(pattern(offset, chunk.length))) mismatch = offset;
      offset += chunk.length;
      maxAhead = Math.max(maxAhead, hugeWritten - offset);
      // Stop for 10 ms every MiB, and for 300 ms every 16 MiB (every kernel buffer on the way fills up):
      // meanwhile the upstream must stop too.
      if (Math.floor(offset / (1 << 20)) !== Math.floor((offset - chunk.length) / (1 << 20))) {
        client.pause();
        setTimeout(() => client.resume(), offset % (16 << 20) < chunk.length ? 300 : 10);
      }
    });
    await done;
    expect(mismatch).toBe(-1);
    expect(offset).toBe(HUGE);
    // The proxy did not read the upstream far ahead of the client: it does not hold the body.
    expect(maxAhead).toBeLessThan(MAX_IN_FLIGHT);
    // The body went around the parser.
    expect(rawBodyStats.responses).toBe(raw + 1);
  }, 60_000);

  it('closes the upstream connection at once when the client leaves mid-body', async () => {
    const raw = rawBodyStats.responses;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const before = endless.length;
    const got = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxy.port('outbound'), path: '/endless/0', headers: { host: 'big' }, agent }, (res) => {
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > 4 << 20) {
            req.destroy();
            resolve(n);
          }
        });
      });
      req.on('error', (err) => (err.message.includes('socket hang up') ? undefined : reject(err)));
      req.end();
    });
    agent.destroy();
    expect(got).toBeGreaterThan(4 << 20);
    expect(endless.length).toBe(before + 1);
    const socket = endless[endless.length - 1]!;
    // Destroyed, not handed back to the pool: the rest of the body would be read as the next response. At once,
    // well inside the window a cancelled request's response may be read and discarded (the body is past its bound).
    await until('the proxy to close the upstream connection', () => socket.destroyed || socket.readableEnded, ABORT_DISCARD_MS / 2);
    const line = await logLine('/endless/0');
    expect(line.response_flags).toContain('DC');
    expect(Number(line.bytes_sent)).toBeGreaterThan(4 << 20);
    expect((await get('/size/13')).body.equals(bodyOf(13))).toBe(true);
    // The body went around the parser.
    expect(rawBodyStats.responses).toBe(raw + 1);
  });

  /** A GET whose response may be cut: its status, the body bytes that came, and the error that ended it ('' if none). */
  const readCut = (path: string, host: string): Promise<{ status: number; received: number; error: string }> =>
    new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: proxy.port('outbound'), path, headers: { host }, agent: false }, (res) => {
        let received = 0;
        res.on('data', (c: Buffer) => (received += c.length));
        res.on('error', (err) => resolve({ status: res.statusCode!, received, error: err.message }));
        res.on('end', () => resolve({ status: res.statusCode!, received, error: '' }));
      });
      req.on('error', (err) => resolve({ status: 0, received: 0, error: err.message }));
      req.end();
    });

  it('cuts the response at the route timeout when the upstream stalls mid-body, and closes that connection', async () => {
    const raw = rawBodyStats.responses;
    const size = 2 << 20;
    const started = Date.now();
    const outcome = await readCut(`/stall/${size}`, 'bigslow');
    expect(outcome.status).toBe(200);
    expect(outcome.error).not.toBe('');
    expect(outcome.received).toBe(size >> 1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    const socket = stalledSocket!;
    await until('the proxy to close the stalled upstream connection', () => socket.destroyed || socket.readableEnded);
    expect((await logLine(`/stall/${size}`)).response_flags).toContain('UT');
    expect(rawBodyStats.responses).toBe(raw + 1);
  });

  it('reads only the body of the response it keeps: a retried 503 with a large body, then a connection: close answer', async () => {
    const raw = rawBodyStats.responses;
    const size = (1 << 20) + 9;
    flakyHits = 0;
    const got = await get(`/flaky/${size}`, false, 'GET', 'bigretry');
    expect(got.status).toBe(200);
    expect(sha(got.body)).toBe(sha(bodyOf(size)));
    expect(flakyHits).toBe(2);
    // The 503's connection was closed when the router let go of it, before its body was read.
    expect(rawBodyStats.responses).toBe(raw + 1);
    const closing = await get(`/close/${size}`);
    expect(closing.body.length).toBe(size);
    expect(sha(closing.body)).toBe(sha(bodyOf(size)));
    expect((await get('/size/15')).body.equals(bodyOf(15))).toBe(true);
    expect(rawBodyStats.responses).toBe(raw + 2);
  });

  it('cuts the response, closing the client connection, when the upstream leaves mid-body', async () => {
    const raw = rawBodyStats.responses;
    const size = 2 << 20;
    const outcome = await readCut(`/cut/${size}`, 'big');
    expect(outcome.status).toBe(200);
    // Not a clean end: the client sees the body cut short.
    expect(outcome.error).not.toBe('');
    expect(outcome.received).toBeLessThan(size);
    const line = await logLine(`/cut/${size}`);
    expect(line.response_flags).toContain('UR');
    expect((await get('/size/14')).body.equals(bodyOf(14))).toBe(true);
    // The body went around the parser.
    expect(rawBodyStats.responses).toBe(raw + 1);
  });
});
