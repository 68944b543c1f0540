// Retries seen from outside: a 503, a dead port and a hung endpoint are tried again on another endpoint; a body
// is replayed byte for byte under the buffer limit and never over it; the retry budget holds when everything
// fails; gRPC UNAVAILABLE is retried, a stream is never replayed once a message reached the client, and a
// gRPC deadline is the proxy's deadline too.
import * as http2 from 'node:http2';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deadPort, startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';
import { echoClient, grpc, startEchoServerWith, type EchoServer } from '../helpers/grpc.js';

const backends: Backend[] = [];
let proxy: RunningProxy;
let port: number;
let always503: Backend, bodyRefuser: Backend, slow503: Backend;
let grpcServer: EchoServer;
let slowHedged: Backend;
let slowCancelled = 0;
let unaryCalls = 0;
let chatCalls = 0;

function answering(name: string, status: number, delayMs = 0): Promise<Backend> {
  return startHttpBackend(name, (req, res) => {
    // The request body is read whole before the answer (so a retry cannot be taken for an early answer).
    req.resume();
    req.on('end', () =>
      setTimeout(() => {
        res.writeHead(status, { 'x-backend': name });
        res.end(name);
      }, delayMs),
    );
  });
}

function echoing(name: string): Promise<Backend> {
  return startHttpBackend(name, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'x-backend': name });
      res.end(Buffer.concat(chunks));
    });
  });
}

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
}

function counter(text: string, name: string, cluster: string, extra = ''): number {
  const m = new RegExp(`${name}\\{cluster="${cluster}[^"]*"${extra}\\} (\\d+)`).exec(text);
  return m === null ? 0 : Number(m[1]);
}

beforeAll(async () => {
  const ok1 = await answering('ok1', 200);
  always503 = await answering('bad', 503);
  const ok2 = await answering('ok2', 200);
  const hung = await startHttpBackend('hung', () => {
    // Never answers: only the per-try timeout ends an attempt here.
  });
  const fast = await answering('fast', 200);
  bodyRefuser = await answering('refuser', 503);
  const echo = await echoing('echo');
  slow503 = await answering('slow503', 503, 50);
  // Answers after 400 ms, unless the proxy cancels the request first (a hedge won).
  slowHedged = await startHttpBackend('slow', (req, res) => {
    const t = setTimeout(() => {
      res.writeHead(200, { 'x-backend': 'slow' });
      res.end('slow');
    }, 400);
    res.on('close', () => {
      if (!res.writableFinished) {
        clearTimeout(t);
        slowCancelled++;
      }
    });
  });
  // Answers after 150 ms: past the 100 ms per-try timeout, but before the other endpoint.
  const mediumHedge = await answering('medium', 200, 150);
  backends.push(ok1, always503, ok2, hung, fast, bodyRefuser, echo, slow503, slowHedged, mediumHedge);
  const dead = await deadPort();

  grpcServer = await startEchoServerWith({
    // Every other call fails with UNAVAILABLE before any message (a trailers-only response).
    Unary(call: { request: { text: string } }, cb: (err: unknown, res?: unknown) => void) {
      unaryCalls++;
      if (call.request.text === 'hang') return;
      if (unaryCalls % 2 === 1) return cb({ code: grpc.status.UNAVAILABLE, details: 'try again' });
      cb(null, { text: `ok:${call.request.text}` });
    },
    // One message, then UNAVAILABLE: the client has seen a message, so the call must not be replayed.
    Chat(call: { write(m: unknown): void; emit(e: string, err: unknown): void; on(e: string, f: () => void): void }) {
      chatCalls++;
      call.write({ text: 'first' });
      setTimeout(() => call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'gone' }), 20);
    },
  });

  const ep = (p: number) => `{ address: 127.0.0.1, port: ${p} }`;
  const rr = 'loadBalancer: { policy: round_robin }';
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: flaky
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(ok1.port)}, ${ep(always503.port)}]
    policy: { ${rr}, retries: { attempts: 2, retryOn: [5xx], backoff: { base: 2ms, max: 10ms } } }
  - name: halfdead
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(ok2.port)}, ${ep(dead)}]
    policy: { ${rr}, retries: { attempts: 1, retryOn: [connect-failure], backoff: { base: 2ms } } }
  - name: hung
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(hung.port)}, ${ep(fast.port)}]
    policy: { ${rr}, timeout: 10s, retries: { attempts: 1, perTryTimeout: 200ms, retryOn: [gateway-error], backoff: { base: 2ms } } }
  - name: body
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(bodyRefuser.port)}, ${ep(echo.port)}]
    policy: { ${rr}, retries: { attempts: 1, retryOn: [503], backoff: { base: 2ms } } }
  - name: allbad
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(slow503.port)}]
    policy: { ${rr}, retries: { attempts: 3, retryOn: [5xx], backoff: { base: 2ms }, budget: { percent: 0, minConcurrency: 2 } } }
  - name: hedged
    ports: [{ port: 8080, protocol: http }]
    endpoints: [${ep(slowHedged.port)}, ${ep(mediumHedge.port)}]
    policy: { ${rr}, retries: { attempts: 1, perTryTimeout: 100ms, hedge: true, retryOn: [5xx], backoff: { base: 2ms } } }
  - name: greeter
    ports: [{ port: 50051, protocol: grpc }]
    endpoints: [${ep(grpcServer.port)}]
    policy: { timeout: 10s, retries: { attempts: 2, retryOn: [unavailable], backoff: { base: 2ms } } }
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await Promise.all(backends.map((b) => b.close()));
  await grpcServer.close();
});

describe('retries (HTTP)', () => {
  it('retries a 503 on the other endpoint: every request succeeds and the retries are counted', async () => {
    for (let i = 0; i < 20; i++) {
      const r = await request(port, { host: 'flaky' });
      expect(r.status).toBe(200);
    }
    // Round robin sent about half the first attempts to the 503 endpoint.
    expect(always503.hits).toBeGreaterThanOrEqual(5);
    expect(counter(await metrics(), 'pillion_upstream_retries_total', 'flaky')).toBe(always503.hits);
  });

  it('retries a connect failure (a dead port) on the other endpoint', async () => {
    for (let i = 0; i < 10; i++) expect((await request(port, { host: 'halfdead' })).status).toBe(200);
  });

  it('ends a hung attempt at the per-try timeout and retries it', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await request(port, { host: 'hung' });
      expect(r.status).toBe(200);
      expect(r.headers['x-backend']).toBe('fast');
    }
  });

  it('hedges at the per-try timeout: both tries race, the first answer wins and the other is cancelled', async () => {
    // Every try passes the 100 ms per-try timeout. A retry would cancel the first try and time out again (504);
    // a hedge keeps it running, so the 150 ms endpoint wins whether it got the first try or the hedge.
    for (let i = 0; i < 6; i++) {
      const r = await request(port, { host: 'hedged' });
      expect(r.status).toBe(200);
      expect(r.headers['x-backend']).toBe('medium');
    }
    // Round robin sent about half of the tries to the 400 ms endpoint; each was cancelled, none answered.
    expect(slowHedged.hits).toBeGreaterThanOrEqual(2);
    await new Promise((r) => setTimeout(r, 50));
    expect(slowCancelled).toBe(slowHedged.hits);
  });

  it('replays a request body under the buffer limit byte for byte (fixed length and chunked)', async () => {
    const body = randomBytes(20_000).toString('base64');
    for (let i = 0; i < 6; i++) {
      const chunked = i % 2 === 1;
      const r = await request(port, {
        host: 'body',
        method: 'POST',
        body,
        headers: chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(Buffer.byteLength(body)) },
      });
      expect(r.status).toBe(200);
      expect(r.body).toBe(body);
    }
    expect(bodyRefuser.hits).toBeGreaterThanOrEqual(3);
  });

  it('does not retry a body over the buffer limit (64 KiB): the 503 reaches the client, never a partial body', async () => {
    const before = counter(await metrics(), 'pillion_upstream_retries_skipped_total', 'body', ',reason="body"');
    const body = randomBytes(100_000).toString('base64');
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await request(port, { host: 'body', method: 'POST', body });
      statuses.push(r.status);
      if (r.status === 200) expect(r.body).toBe(body);
      else expect(r.headers['x-backend']).toBe('refuser');
    }
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThanOrEqual(1);
    const after = counter(await metrics(), 'pillion_upstream_retries_skipped_total', 'body', ',reason="body"');
    expect(after - before).toBe(statuses.filter((s) => s === 503).length);
  });

  it('keeps retries within the budget when every endpoint fails: no retry storm, every request answered', async () => {
    const hitsBefore = slow503.hits;
    const replies = await Promise.all(Array.from({ length: 20 }, () => request(port, { host: 'allbad' })));
    expect(replies.map((r) => r.status)).toEqual(Array(20).fill(503));
    // Two retry slots (percent 0, minConcurrency 2), held by a request until it ends, three retries each at most.
    const attempts = slow503.hits - hitsBefore;
    expect(attempts).toBeGreaterThan(20);
    expect(attempts).toBeLessThanOrEqual(20 + 2 * 3);
    expect(counter(await metrics(), 'pillion_upstream_retries_skipped_total', 'allbad', ',reason="budget"')).toBeGreaterThan(0);
  });
});

describe('retries (gRPC)', () => {
  it('retries UNAVAILABLE from a trailers-only response', async () => {
    const client = echoClient(port, 'greeter.default:50051');
    try {
      for (let i = 0; i < 5; i++) {
        const reply = await new Promise<{ text: string }>((resolve, reject) =>
          client.Unary({ text: `n${i}` }, (err: Error | null, res: { text: string }) => (err ? reject(err) : resolve(res))),
        );
        expect(reply.text).toBe(`ok:n${i}`);
      }
      expect(unaryCalls).toBe(10);
    } finally {
      client.close();
    }
  });

  it('never replays a stream once a response message has reached the client', async () => {
    const client = echoClient(port, 'greeter.default:50051');
    try {
      const before = chatCalls;
      const { messages, code } = await new Promise<{ messages: string[]; code: number }>((resolve) => {
        const got: string[] = [];
        const call = client.Chat();
        call.on('data', (m: { text: string }) => got.push(m.text));
        call.on('error', (e: grpc.ServiceError) => resolve({ messages: got, code: e.code }));
        call.on('end', () => resolve({ messages: got, code: 0 }));
        call.write({ text: 'x' });
      });
      expect(messages).toEqual(['first']);
      expect(code).toBe(grpc.status.UNAVAILABLE);
      expect(chatCalls - before).toBe(1);
    } finally {
      client.close();
    }
  });

  it('honours grpc-timeout: the proxy answers DEADLINE_EXCEEDED itself when the deadline passes', async () => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const headers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/pillion.test.Echo/Unary',
          ':authority': 'greeter.default:50051',
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': '300m',
        });
        stream.on('response', resolve);
        stream.on('error', reject);
        // One gRPC message: uncompressed, 6 bytes, field 1 = "hang".
        stream.end(Buffer.from([0, 0, 0, 0, 6, 0x0a, 4, 0x68, 0x61, 0x6e, 0x67]));
      });
      expect(headers[':status']).toBe(200);
      expect(headers['grpc-status']).toBe('4');
      expect(headers['x-pillion-reason']).toBe('upstream_timeout');
    } finally {
      session.close();
    }
  });
});
