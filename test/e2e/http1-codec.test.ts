// The HTTP/1.x codec on raw sockets, both sides: framing (pipelining, HEAD, HTTP/1.0, chunked with trailers),
// connection reuse after early answers and backpressure, and the timeouts and errors the connection answers.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as net from 'node:net';
import { startHttpBackend, type Backend } from '../helpers/backends.js';
import { startProxy, type RunningProxy } from '../helpers/proxy.js';
import { request } from '../helpers/client.js';

const BIG = Buffer.alloc(1 << 20, 'b');
/** Every byte value, 8 times: a small body (it goes out in one write with the head) that is not text. */
const ALL_BYTES = Buffer.from(Array.from({ length: 2048 }, (_, i) => i % 256));
const BYTE_VALUES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

let echo: Backend;
let framing: Backend;
let faulty: net.Server;
let proxy: RunningProxy;
let port: number;
let timeouts: RunningProxy;
/** Bytes the upstream has handed to its socket for /huge (it writes only as its socket drains). */
let hugeWritten = 0;
const HUGE = 64 << 20;

beforeAll(async () => {
  echo = await startHttpBackend('echo');
  framing = await startHttpBackend('framing', (req, res) => {
    if (req.url === '/chunked-trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('part one, ');
      res.write('part two');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end();
    } else if (req.url === '/huge') {
      const piece = Buffer.alloc(64 * 1024, 'h');
      res.writeHead(200, { 'content-length': String(HUGE) });
      const pump = (): void => {
        while (hugeWritten < HUGE) {
          hugeWritten += piece.length;
          if (!res.write(piece)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      res.on('error', () => {});
      pump();
    } else if (req.url === '/stream') {
      // No content-length: Node sends it chunked to an HTTP/1.1 client (the proxy).
      res.write('streamed ');
      setTimeout(() => res.end('body'), 20);
    } else if (req.url === '/cookies') {
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.end('two cookies');
    } else if (req.url === '/many') {
      for (let i = 0; i < 40; i++) res.setHeader(`x-r${i}`, `v${i}`);
      res.end('many');
    } else if (req.url === '/close') {
      res.setHeader('connection', 'close');
      res.end(`closing ${req.socket.remotePort}`);
    } else if (req.url === '/slow') {
      setTimeout(() => res.end('slow answer'), 200);
    } else if (req.url === '/big') {
      res.end(BIG);
    } else if (req.url?.startsWith('/bytes/')) {
      // /bytes/<n>: n bytes, every byte value from 0xff down, over and over.
      const body = Buffer.from(Array.from({ length: Number(req.url.slice(7)) }, (_, i) => 255 - (i % 256)));
      res.setHeader('content-length', String(body.length));
      res.end(body);
    } else if (req.url === '/bytes') {
      res.setHeader('content-length', String(ALL_BYTES.length));
      res.end(ALL_BYTES);
    } else {
      res.setHeader('content-length', '5');
      res.end(req.method === 'HEAD' ? undefined : 'hello');
    }
  });
  // A raw TCP upstream that misbehaves on purpose, by request path (a real socket, not a mock of our code).
  faulty = net.createServer((socket) => {
    socket.on('error', () => {});
    let seen = '';
    socket.on('data', (d: Buffer) => {
      seen += d.toString('latin1');
      if (!seen.includes('\r\n\r\n')) return;
      const path = seen.split(' ')[1];
      seen = '';
      if (path === '/garbage') socket.end('NOT HTTP AT ALL\r\n\r\n');
      else if (path === '/hangup') socket.destroy();
      else if (path === '/short') socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part');
      else if (path === '/until-close') socket.end('HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nread until the close');
      // A response followed, in the same write, by a second one nobody asked for (a desync attempt).
      else if (path === '/extra')
        setTimeout(() => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled'), 50);
      // A small binary body in three writes: the first piece leaves with the head, the others after it.
      else if (path === '/pieces') {
        socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${3 * 256}\r\n\r\n`);
        socket.write(BYTE_VALUES);
        setTimeout(() => socket.write(BYTE_VALUES), 20);
        setTimeout(() => socket.write(BYTE_VALUES), 40);
      } else if (path === '/early')
        // 103 Early Hints, then (in another write) the response.
        socket.write('HTTP/1.1 103 Early Hints\r\nlink: </s.css>\r\n\r\n', () =>
          setTimeout(() => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter'), 20),
        );
      else if (path === '/port') socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nport ${String(socket.remotePort).padStart(6, '0')}`);
    });
  });
  await new Promise<void>((r) => faulty.listen(0, '127.0.0.1', () => r()));
  const faultyPort = (faulty.address() as net.AddressInfo).port;
  const mesh = `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: echo
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${echo.port} }]
  - name: framing
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${framing.port} }]
  - name: faulty
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${faultyPort} }]
    policy: { circuitBreakers: { maxConnections: 1 } }
`;
  proxy = await startProxy(mesh, { service: 'client' });
  port = proxy.port('outbound');
  timeouts = await startProxy(mesh, {
    service: 'client',
    hcm: { request_timeout: { nanos: 300_000_000 }, common_http_protocol_options: { idle_timeout: { nanos: 400_000_000 } } },
  });
});

afterAll(async () => {
  await proxy.close();
  await timeouts.close();
  await echo.close();
  await framing.close();
  await new Promise<void>((r) => faulty.close(() => r()));
});

/** A raw client connection that collects everything the proxy sends. */
class RawClient {
  readonly socket: net.Socket;
  text = '';
  readonly closed: Promise<void>;
  constructor(p: number) {
    this.socket = net.connect(p, '127.0.0.1');
    this.socket.setEncoding('latin1');
    this.socket.on('data', (d: string) => (this.text += d));
    this.socket.on('error', () => {});
    this.closed = new Promise((resolve) => this.socket.on('close', () => resolve()));
  }
  send(text: string): void {
    this.socket.write(text);
  }
  async until(predicate: (text: string) => boolean, timeoutMs = 3_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.text)) {
      if (Date.now() > deadline) throw new Error(`timed out; received so far:\n${this.text}`);
      await new Promise((r) => setTimeout(r, 5));
    }
    return this.text;
  }
  close(): void {
    this.socket.destroy();
  }
}

/** Runs `body` with a fresh raw connection, closed afterwards whatever happens. */
async function withRawClient(p: number, body: (c: RawClient) => Promise<void>): Promise<void> {
  const c = new RawClient(p);
  try {
    await body(c);
  } finally {
    c.close();
  }
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe('HTTP/1.1 framing through the proxy', () => {
  it('answers pipelined requests in order on one connection', async () => {
    await withRawClient(port, async (c) => {
      c.send(
        'GET /first HTTP/1.1\r\nhost: echo\r\n\r\n' +
          'POST /second HTTP/1.1\r\nhost: echo\r\ncontent-length: 4\r\n\r\nbody' +
          'GET /third HTTP/1.1\r\nhost: echo\r\n\r\n',
      );
      // Each reply is chunked (the echo backend sets no length): three last-chunks mean three whole replies.
      const text = await c.until((t) => count(t, '\r\n0\r\n\r\n') === 3);
      const first = text.indexOf('"/first"');
      const second = text.indexOf('"/second"');
      const third = text.indexOf('"/third"');
      expect(first).toBeGreaterThan(0);
      expect(second).toBeGreaterThan(first);
      expect(third).toBeGreaterThan(second);
      expect(text).toContain('"body":"body"');
    });
  });

  it('sends no body for HEAD, keeps content-length, and the connection stays usable', async () => {
    await withRawClient(port, async (c) => {
      c.send('HEAD /plain HTTP/1.1\r\nhost: framing\r\n\r\n');
      const head = await c.until((t) => t.includes('\r\n\r\n'));
      expect(head).toMatch(/^HTTP\/1.1 200 OK\r\n/);
      expect(head.toLowerCase()).toContain('content-length: 5\r\n');
      c.send('GET /plain HTTP/1.1\r\nhost: framing\r\n\r\n');
      const both = await c.until((t) => t.endsWith('hello'));
      // Exactly two heads and one body: nothing of the HEAD reply's body leaked onto the wire.
      expect(count(both, 'HTTP/1.1 200 OK')).toBe(2);
      expect(count(both, 'hello')).toBe(1);
    });
  });

  it('forwards a small binary body byte for byte (every byte value, in the write with the head)', async () => {
    const body = await new Promise<Buffer>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/bytes', headers: { host: 'framing' }, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    expect(body.equals(ALL_BYTES)).toBe(true);
  });

  it('forwards binary bodies byte for byte on one connection, on either side of the size sent in the write with the head', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const n of [1, 255, 2047, 2048, 2049, 5000]) {
        const body = await new Promise<Buffer>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: `/bytes/${n}`, headers: { host: 'framing' }, agent }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve(Buffer.concat(chunks)));
            res.on('error', reject);
          });
          req.on('error', reject);
        });
        expect(body.equals(Buffer.from(Array.from({ length: n }, (_, i) => 255 - (i % 256)))), `${n} bytes`).toBe(true);
      }
    } finally {
      agent.destroy();
    }
  });

  it('forwards a small binary body that arrives in pieces byte for byte, and the connection stays usable', async () => {
    await withRawClient(port, async (c) => {
      c.send('GET /pieces HTTP/1.1\r\nhost: faulty\r\n\r\nGET /plain HTTP/1.1\r\nhost: framing\r\n\r\n');
      const text = await c.until((t) => t.endsWith('hello'));
      const start = text.indexOf('\r\n\r\n') + 4;
      expect(Buffer.from(text.slice(start, start + 768), 'latin1').equals(Buffer.concat([BYTE_VALUES, BYTE_VALUES, BYTE_VALUES]))).toBe(true);
      expect(text.slice(start + 768)).toMatch(/^HTTP\/1.1 200 OK\r\n/);
    });
  });

  it('forwards a chunked response with its trailers', async () => {
    await withRawClient(port, async (c) => {
      c.send('GET /chunked-trailers HTTP/1.1\r\nhost: framing\r\nte: trailers\r\n\r\n');
      const text = await c.until((t) => t.includes('x-checksum: abc123\r\n\r\n'));
      expect(text.toLowerCase()).toContain('transfer-encoding: chunked\r\n');
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      expect(body).toBe('a\r\npart one, \r\n8\r\npart two\r\n0\r\nx-checksum: abc123\r\n\r\n');
    });
  });

  it('answers an HTTP/1.0 client with a body delimited by the close', async () => {
    await withRawClient(port, async (c) => {
      c.send('GET /stream HTTP/1.0\r\nhost: framing\r\n\r\n');
      await c.closed;
      expect(c.text).toMatch(/^HTTP\/1.1 200 OK\r\n/);
      expect(c.text.toLowerCase()).not.toContain('transfer-encoding');
      expect(c.text.toLowerCase()).toContain('connection: close\r\n');
      expect(c.text.endsWith('\r\n\r\nstreamed body')).toBe(true);
    });
  });

  it('serves nothing sent after a request that asked to close the connection', async () => {
    await withRawClient(port, async (c) => {
      const hitsBefore = framing.hits;
      c.send('GET /plain HTTP/1.1\r\nhost: framing\r\nconnection: close\r\n\r\nGET /plain HTTP/1.1\r\nhost: framing\r\n\r\n');
      await c.until((t) => t.endsWith('hello'));
      expect(c.text.toLowerCase()).toContain('connection: close\r\n');
      await new Promise((r) => setTimeout(r, 100));
      expect(count(c.text, 'HTTP/1.1 200 OK')).toBe(1);
      expect(framing.hits - hitsBefore).toBe(1);
    });
  });

  it('keeps an HTTP/1.0 keep-alive connection open', async () => {
    await withRawClient(port, async (c) => {
      c.send('GET /plain HTTP/1.0\r\nhost: framing\r\nconnection: keep-alive\r\n\r\n');
      await c.until((t) => t.endsWith('hello'));
      expect(c.text.toLowerCase()).toContain('connection: keep-alive\r\n');
      c.send('GET /plain HTTP/1.0\r\nhost: framing\r\nconnection: keep-alive\r\n\r\n');
      await c.until((t) => count(t, 'hello') === 2);
    });
  });

  it('does not let the trailers of a chunked request leak into the next request on the connection', async () => {
    await withRawClient(port, async (c) => {
      let many = '';
      for (let i = 0; i < 40; i++) many += `x-h${i}: v${i}\r\n`;
      c.send(
        'POST /with-trailer HTTP/1.1\r\nhost: echo\r\ntransfer-encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\nx-injected: yes\r\n\r\n' +
          `GET /long-head HTTP/1.1\r\nhost: echo\r\n${many}\r\n`,
      );
      const text = await c.until((t) => count(t, '\r\n0\r\n\r\n') === 2);
      const second = JSON.parse(text.slice(text.indexOf('{"name"', text.indexOf('"/with-trailer"') + 1)).split('\r\n')[0]!);
      expect(second.url).toBe('/long-head');
      expect(second.headers['x-h39']).toBe('v39');
      expect(second.headers['x-injected']).toBeUndefined();
    });
  });

  it('keeps repeated response header lines (set-cookie) and forwards more than 32 header lines each way', async () => {
    const cookies = await request(port, { host: 'framing', path: '/cookies' });
    expect(cookies.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    const many: Record<string, string> = {};
    for (let i = 0; i < 40; i++) many[`x-h${i}`] = `v${i}`;
    const reply = await request(port, { host: 'echo', path: '/many', headers: many });
    const seen = JSON.parse(reply.body).headers as Record<string, string>;
    for (let i = 0; i < 40; i++) expect(seen[`x-h${i}`]).toBe(`v${i}`);
    const manyBack = await request(port, { host: 'framing', path: '/many' });
    for (let i = 0; i < 40; i++) expect(manyBack.headers[`x-r${i}`]).toBe(`v${i}`);
  });
});

describe('connection reuse', () => {
  it('reads and drops the body of a request answered early, and serves the next request', async () => {
    await withRawClient(port, async (c) => {
      c.send('POST /x HTTP/1.1\r\nhost: nowhere\r\ncontent-length: 11\r\n\r\n');
      await c.until((t) => t.includes('x-pillion-reason: no_route'));
      c.send('hello world');
      c.send('GET /after HTTP/1.1\r\nhost: echo\r\n\r\n');
      const text = await c.until((t) => t.includes('"/after"'));
      expect(text).toMatch(/^HTTP\/1.1 404 /);
      expect(text).toContain('HTTP/1.1 200 OK');
    });
  });

  it('reuses an upstream connection after a response that was read slowly (backpressure)', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 3; i++) {
        const length = await new Promise<number>((resolve, reject) => {
          http
            .get({ host: '127.0.0.1', port, path: '/big', headers: { host: 'framing' }, agent }, (res) => {
              // Read slowly to the end: the proxy pauses its upstream read (backpressure) and must resume it, and
              // the upstream connection then carries the next request.
              let n = 0;
              res.on('data', (d: Buffer) => {
                n += d.length;
                res.pause();
                setTimeout(() => res.resume(), 1);
              });
              res.on('end', () => resolve(n));
            })
            .on('error', reject);
        });
        expect(length).toBe(BIG.length);
      }
    } finally {
      agent.destroy();
    }
  });

  it('buffers a bounded amount of a large response for a client that does not read (backpressure)', async () => {
    hugeWritten = 0;
    const client = net.connect(port, '127.0.0.1');
    client.on('error', () => {});
    try {
      await new Promise<void>((resolve) => client.once('connect', resolve));
      client.write('GET /huge HTTP/1.1\r\nhost: framing\r\n\r\n');
      client.pause();
      await new Promise((r) => setTimeout(r, 1500));
      // Kernel socket buffers on both loopback hops hold a few MiB; a proxy that kept reading would take all 64.
      expect(hugeWritten).toBeGreaterThan(0);
      expect(hugeWritten).toBeLessThan(24 << 20);
    } finally {
      client.destroy();
    }
  });

  it('opens a new upstream connection when the upstream says connection: close, and keeps the client one', async () => {
    await withRawClient(port, async (c) => {
      c.send('GET /close HTTP/1.1\r\nhost: framing\r\n\r\n');
      await c.until((t) => /closing \d+$/.test(t));
      // connection: close is hop-by-hop: it closes the upstream connection, not the client's.
      expect(c.text.toLowerCase()).not.toContain('connection: close');
      c.send('GET /close HTTP/1.1\r\nhost: framing\r\n\r\n');
      const text = await c.until((t) => count(t, 'closing ') === 2 && /closing \d+$/.test(t));
      const ports = [...text.matchAll(/closing (\d+)/g)].map((m) => m[1]);
      expect(ports[0]).not.toBe(ports[1]); // a fresh upstream connection (another source port) each time
    });
  });
});

describe('an upstream that misbehaves', () => {
  it('answers 502 upstream_protocol_error to a response that is not HTTP', async () => {
    const reply = await request(port, { host: 'faulty', path: '/garbage' });
    expect(reply.status).toBe(502);
    expect(reply.headers['x-pillion-reason']).toBe('upstream_protocol_error');
  });

  it('answers 503 upstream_reset when the upstream hangs up before answering', async () => {
    const reply = await request(port, { host: 'faulty', path: '/hangup' });
    expect(reply.status).toBe(503);
    expect(reply.headers['x-pillion-reason']).toBe('upstream_reset');
  });

  it('breaks the client connection when the upstream body is cut short, instead of passing it off as complete', async () => {
    await withRawClient(port, async (c) => {
      c.send('GET /short HTTP/1.1\r\nhost: faulty\r\n\r\n');
      await c.closed;
      expect(c.text).toMatch(/^HTTP\/1.1 200 OK\r\n/);
      expect(c.text.toLowerCase()).toContain('content-length: 100\r\n');
      // Fewer bytes than announced, then the close: a client's parser reports the truncation.
      expect(c.text.endsWith('only part')).toBe(true);
    });
  });

  it('passes over a 103 from the upstream to its final response, and reuses the connection after it', async () => {
    const early = await request(port, { host: 'faulty', path: '/early' });
    expect(early.status).toBe(200);
    expect(early.body).toBe('after');
    // One connection at most (maxConnections: 1): this request goes on the same one.
    const next = await request(port, { host: 'faulty', path: '/port' });
    expect(next.status).toBe(200);
    expect(next.body).toMatch(/^port \d{6}$/);
  });

  it('does not hand bytes the upstream sent unasked to the next request waiting for the connection', async () => {
    // One connection at most: the second request waits for the first one's, and would be written on it the
    // moment the first response ends, before the rest of that read (the unsolicited response) is parsed.
    const [first, second] = await Promise.all([
      request(port, { host: 'faulty', path: '/extra' }),
      new Promise<Awaited<ReturnType<typeof request>>>((r) => setTimeout(() => r(request(port, { host: 'faulty', path: '/port' })), 10)),
    ]);
    expect(first.body).toBe('ok');
    expect(second.status).toBe(200);
    expect(second.body).toMatch(/^port \d{6}$/);
  });

  it('forwards a body delimited by the upstream closing, as chunked to an HTTP/1.1 client', async () => {
    await withRawClient(port, async (c) => {
      c.send('GET /until-close HTTP/1.1\r\nhost: faulty\r\n\r\n');
      const text = await c.until((t) => t.endsWith('0\r\n\r\n'));
      expect(text.toLowerCase()).toContain('transfer-encoding: chunked\r\n');
      expect(text).toContain('read until the close');
      expect(text.toLowerCase()).not.toContain('connection: close');
    });
  });
});

describe('errors and timeouts the connection answers', () => {
  it('answers 400 to a malformed chunked body and closes', async () => {
    await withRawClient(port, async (c) => {
      c.send('POST /x HTTP/1.1\r\nhost: echo\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnot hex\r\n');
      await c.closed;
      expect(c.text).toMatch(/^HTTP\/1.1 400 /);
      expect(c.text).toContain('x-pillion-reason: bad_request');
    });
  });

  it.each([
    ['content-length with transfer-encoding', 'POST / HTTP/1.1\r\nhost: echo\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'],
    ['two different content-lengths', 'POST / HTTP/1.1\r\nhost: echo\r\ncontent-length: 4\r\ncontent-length: 5\r\n\r\nbody'],
    ['a header line ended by a bare LF', 'GET / HTTP/1.1\r\nhost: echo\nx-a: b\r\n\r\n'],
    ['a space before the colon', 'GET / HTTP/1.1\r\nhost: echo\r\ncontent-length : 4\r\n\r\nbody'],
    ['an obs-fold continuation line', 'GET / HTTP/1.1\r\nhost: echo\r\nx-a: b\r\n c\r\n\r\n'],
  ])('refuses a request with %s (request smuggling guards) with 400, and never forwards it', async (_name, text) => {
    const hitsBefore = echo.hits;
    await withRawClient(port, async (c) => {
      c.send(text);
      await c.closed;
      expect(c.text).toMatch(/^HTTP\/1.1 400 /);
      expect(echo.hits).toBe(hitsBefore);
    });
  });

  it('answers 431 to a chunked request with more trailer lines than max_headers_count, and closes', async () => {
    await withRawClient(port, async (c) => {
      let many = '';
      for (let i = 0; i < 150; i++) many += `x-t${i}: v\r\n`;
      c.send(`POST /x HTTP/1.1\r\nhost: echo\r\ntransfer-encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n${many}\r\n`);
      await c.closed;
      expect(c.text).toMatch(/^HTTP\/1.1 431 /);
      expect(c.text).toContain('x-pillion-reason: headers_too_large');
    });
  });

  it('answers a good request, then 400 to the bad one pipelined behind it, then closes', async () => {
    await withRawClient(port, async (c) => {
      c.send('GET /good HTTP/1.1\r\nhost: framing\r\n\r\nGARBAGE\r\n\r\n');
      await c.closed;
      expect(c.text).toMatch(/^HTTP\/1.1 200 OK\r\n/);
      expect(c.text.indexOf('hello')).toBeLessThan(c.text.indexOf('HTTP/1.1 400 '));
      expect(c.text).toContain('x-pillion-reason: bad_request');
    });
  });

  it('answers 400 to an HTTP/1.1 request without a Host header', async () => {
    await withRawClient(port, async (c) => {
      c.send('GET /no-host HTTP/1.1\r\n\r\n');
      const text = await c.until((t) => t.includes('Host header'));
      expect(text).toMatch(/^HTTP\/1.1 400 /);
    });
  });

  it('answers 408 request_timeout when a request does not arrive in time', async () => {
    await withRawClient(timeouts.port('outbound'), async (c) => {
      c.send('GET / HTTP/1.1\r\nhost: echo\r\n');
      await c.closed;
      expect(c.text).toMatch(/^HTTP\/1.1 408 /);
      expect(c.text).toContain('x-pillion-reason: request_timeout');
    });
  });

  it('closes a keep-alive connection that stays idle past the idle timeout', async () => {
    await withRawClient(timeouts.port('outbound'), async (c) => {
      c.send('GET /idle HTTP/1.1\r\nhost: echo\r\n\r\n');
      await c.until((t) => t.includes('"/idle"'));
      const started = Date.now();
      await c.closed;
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    });
  });
});

describe('drain', () => {
  it('closes idle keep-alive connections at once and busy ones after their answer, which says connection: close', async () => {
    const draining = await startProxy(
      `
services:
  - name: client
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: 1 }]
  - name: framing
    ports: [{ port: 8080, protocol: http }]
    endpoints: [{ address: 127.0.0.1, port: ${framing.port} }]
`,
      { service: 'client' },
    );
    const p = draining.port('outbound');
    const idle = new RawClient(p);
    const busy = new RawClient(p);
    try {
      idle.send('GET /plain HTTP/1.1\r\nhost: framing\r\n\r\n');
      await idle.until((t) => t.endsWith('hello'));
      busy.send('GET /slow HTTP/1.1\r\nhost: framing\r\n\r\n');
      await new Promise((r) => setTimeout(r, 50));
      const drained = draining.proxy.drain();
      await idle.closed;
      expect(count(idle.text, 'HTTP/1.1 200 OK')).toBe(1);
      // The idle one went first, while the busy one still waited for its 200 ms answer (not at the drain timeout).
      expect(busy.text).toBe('');
      await busy.closed;
      expect(busy.text).toMatch(/^HTTP\/1.1 200 OK\r\n/);
      expect(busy.text.toLowerCase()).toContain('connection: close\r\n');
      expect(busy.text.endsWith('slow answer')).toBe(true);
      await drained;
    } finally {
      idle.close();
      busy.close();
      await draining.close();
    }
  });
});
