// What a retry policy must never do, seen from outside: retry a response an upstream proxy marked overloaded
// (x-envoy-overloaded) or rate limited (x-envoy-ratelimited), as Envoy never does; and the proxy marks its own
// circuit breaker refusals so that a proxy in front of it does not retry them either. And hedging must not hide
// a hung endpoint from outlier detection: each per-try timeout counts, as in Envoy. The per-try timeout runs from
// the end of the request, as Envoy's: a client slow to send its body is not retried as a slow endpoint. A retry
// holds its slot (maxRetries, the budget) until its answer starts, not for the whole of a long response. Nor does
// the per-try timeout run while a try waits for a busy pool's connection (Envoy's starts when the pool is ready).
import * as http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

const backends: Backend[] = [];
let proxy: RunningProxy;
let port: number;
const hits = { overloaded: 0, ratelimited: 0, plain: 0, hung: 0, echo: 0, busy: 0 };

function refusing(name: keyof typeof hits, status: number, header: string | null): Promise<Backend> {
  return startHttpBackend(name, (_req, res) => {
    hits[name]++;
    res.writeHead(status, header === null ? {} : { [header]: 'true' });
    res.end(name);
  });
}

beforeAll(async () => {
  const overloaded = await refusing('overloaded', 503, 'x-envoy-overloaded');
  const ratelimited = await refusing('ratelimited', 429, 'x-envoy-ratelimited');
  const plain = await refusing('plain', 503, null);
  const slow = await startHttpBackend('slow', (_req, res) => {
    setTimeout(() => res.end('slow'), 300);
  });
  // Takes requests and never answers: only a per-try timeout (and the hedge beside it) gets past it.
  const hung = await startHttpBackend('hung', () => {
    hits.hung++;
  });
  const fast = await startHttpBackend('fast', (_req, res) => res.end('fast'));
  // Answers as soon as the whole request body is in, with the body.
  const echo = await startHttpBackend('echo', (req, res) => {
    hits.echo++;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.end(Buffer.concat(chunks)));
  });
  // Each path's first request gets a 503; after that /stream streams for 800 ms and /quick answers at once.
  const seen = new Set<string>();
  const streamy = await startHttpBackend('streamy', (req, res) => {
    const path = req.url!;
    if (!seen.has(path)) {
      seen.add(path);
      res.writeHead(503);
      res.end();
      return;
    }
    res.writeHead(200);
    if (!path.startsWith('/stream')) return void res.end('quick');
    res.write('streaming');
    setTimeout(() => res.end(' done'), 800);
  });
  // Healthy: every answer within 150 ms, well under the 250 ms per-try timeout.
  const busy = await startHttpBackend('busy', (_req, res) => {
    hits.busy++;
    setTimeout(() => res.end('busy'), 150);
  });
  backends.push(overloaded, ratelimited, plain, slow, hung, fast, echo, streamy, busy);
  const retries = 'retries: { attempts: 2, retryOn: [5xx, 429], backoff: { base: 2ms } }';
  const svc = (name: string, b: Backend, policy: string) => `
  - name: ${name}
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${b.port} }]
    policy: { ${policy} }`;
  proxy = await startProxy(
    `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
${svc('overloaded', overloaded, retries)}
${svc('ratelimited', ratelimited, retries)}
${svc('plain', plain, retries)}
${svc('bulkhead', slow, 'circuitBreakers: { maxRequests: 1 }')}
  - name: upload
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${echo.port} }]
    policy:
      timeout: 5s
      retries: { attempts: 2, perTryTimeout: 200ms, retryOn: [5xx], backoff: { base: 2ms } }
      outlierDetection: { consecutive5xx: 1, consecutiveGatewayFailure: 1, interval: 10s, baseEjectionTime: 30s }
  - name: streamy
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${streamy.port} }]
    policy: { circuitBreakers: { maxRetries: 1 }, retries: { attempts: 1, retryOn: [5xx], backoff: { base: 2ms } } }
  - name: busy
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${busy.port} }]
    policy:
      timeout: 5s
      circuitBreakers: { maxConnections: 1 }
      retries: { attempts: 2, perTryTimeout: 250ms, retryOn: [5xx], backoff: { base: 2ms } }
      outlierDetection: { consecutive5xx: 2, consecutiveGatewayFailure: 2, interval: 10s, baseEjectionTime: 30s }
  - name: hedged
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${hung.port} }, { address: 127.0.0.1, port: ${fast.port} }]
    policy:
      loadBalancer: { policy: round_robin }
      timeout: 5s
      retries: { attempts: 1, perTryTimeout: 100ms, hedge: true, retryOn: [5xx], backoff: { base: 2ms } }
      outlierDetection: { consecutive5xx: 3, consecutiveGatewayFailure: 3, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50 }
`,
    { service: 'client' },
  );
  port = proxy.port('outbound');
});

afterAll(async () => {
  await proxy.close();
  await Promise.all(backends.map((b) => b.close()));
});

describe('retries an upstream forbids', () => {
  it('a 503 with x-envoy-overloaded goes to the client after one try; a plain 503 is retried', async () => {
    const refused = await request(port, { host: 'overloaded' });
    expect(refused.status).toBe(503);
    expect(refused.body).toBe('overloaded');
    expect(hits.overloaded).toBe(1);
    const plain = await request(port, { host: 'plain' });
    expect(plain.status).toBe(503);
    expect(hits.plain).toBe(3);
  });

  it('a 429 with x-envoy-ratelimited is not retried even when retryOn names 429', async () => {
    const refused = await request(port, { host: 'ratelimited' });
    expect(refused.status).toBe(429);
    expect(hits.ratelimited).toBe(1);
  });

  it("the proxy's own circuit breaker refusal says x-envoy-overloaded, so a proxy in front does not retry it", async () => {
    const first = request(port, { host: 'bulkhead' });
    await new Promise((r) => setTimeout(r, 50));
    const refused = await request(port, { host: 'bulkhead' });
    expect(refused.status).toBe(503);
    expect(refused.headers['x-pillion-reason']).toBe('overflow');
    expect(refused.headers['x-envoy-overloaded']).toBe('true');
    expect((await first).status).toBe(200);
  });
});

describe('hedging and outlier detection', () => {
  it('a hung endpoint that always loses to the hedge is ejected after its per-try timeouts, and then skipped', async () => {
    for (let i = 0; i < 10; i++) {
      const reply = await request(port, { host: 'hedged' });
      expect(reply.status).toBe(200);
      expect(reply.body).toBe('fast');
    }
    const cluster = proxy.proxy.clusters().find((c) => c.name.startsWith('hedged.'))!;
    const hung = cluster.endpoints.find((e) => e.port === backends[4]!.port)!;
    expect(hung.ejectionReason).toBe('consecutive_gateway_failure');
    // Three timeouts eject it; round robin would have sent it five of the ten first tries.
    expect(hits.hung).toBe(3);
  });
});

describe('the per-try timeout and a slow client', () => {
  it('starts when the request body has all arrived: an upload slower than it is answered once, not retried or ejected', async () => {
    const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers: { host: 'upload' }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      // Half the body now, the rest after 2.5 per-try timeouts (well within the 5 s route timeout).
      req.write('first half, ');
      setTimeout(() => req.end('second half'), 500);
    });
    expect(reply.status).toBe(200);
    expect(reply.body).toBe('first half, second half');
    expect(hits.echo).toBe(1);
    const cluster = proxy.proxy.clusters().find((c) => c.name.startsWith('upload.'))!;
    expect(cluster.endpoints[0]!.ejectionReason).toBeNull();
  });
});

describe('retry slots', () => {
  it('a retried request gives its slot back when its response starts: a long response does not starve other retries', async () => {
    // maxRetries 1: this request's retry takes the only slot, and its answer streams for 800 ms.
    const long = request(port, { host: 'streamy', path: '/stream' });
    await new Promise((r) => setTimeout(r, 200));
    const other = await request(port, { host: 'streamy', path: '/quick' });
    expect(other.status).toBe(200);
    expect(other.body).toBe('quick');
    const first = await long;
    expect(first.status).toBe(200);
    expect(first.body).toBe('streaming done');
  });
});

describe('the per-try timeout and a busy pool', () => {
  it('does not run while a try waits for the one connection: every request answered once, nothing ejected', async () => {
    // maxConnections 1: the fourth request waits 450 ms for the connection, then is answered in 150 ms.
    const replies = await Promise.all(Array.from({ length: 4 }, () => request(port, { host: 'busy' })));
    expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    expect(hits.busy).toBe(4);
    const cluster = proxy.proxy.clusters().find((c) => c.name.startsWith('busy.'))!;
    expect(cluster.endpoints[0]!.ejectionReason).toBeNull();
  });
});
