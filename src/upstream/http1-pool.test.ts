// The HTTP/1.1 pool against a real server, driven by a sink that applies backpressure the way a slow client's
// exchange does (a stand-in for the exchange, which is not network code).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { ABORT_DISCARD_MAX_BYTES, ABORT_DISCARD_MS, Http1Pool, RAW_BODY_MIN_BYTES } from './http1-pool.js';
import { rawBodyStats } from './raw-body-stats.js';
import { PendingLimit, type UpstreamSink } from './pool.js';
import type { HeaderMap } from '../http/headers.js';

let server: http.Server;
let port: number;
let connections = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    // /later/<ms>[/<bytes>]: the answer (default 'hello') comes that much later.
    const [, later, ms, bytes] = (req.url ?? '/').split('/');
    const body = later === 'later' && bytes !== undefined ? Buffer.alloc(Number(bytes), 'x') : Buffer.from('hello');
    const answer = (): void => {
      res.setHeader('content-length', String(body.length));
      res.end(body);
    };
    if (later === 'later') setTimeout(answer, Number(ms));
    else answer();
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

/** Collects one response; `pushBack` makes every body chunk report a full downstream. */
class RecordingSink implements UpstreamSink {
  status = 0;
  body = '';
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (err: Error) => void;
  constructor(private readonly pushBack: boolean) {
    this.done = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }
  onUpstreamHeaders(status: number, _headers: HeaderMap): void {
    this.status = status;
  }
  onUpstreamData(chunk: Buffer): boolean {
    this.body += chunk.toString();
    return !this.pushBack;
  }
  dataReleased(): boolean {
    return true; // the chunk was turned into a string
  }
  onUpstreamEnd(): void {
    this.resolve();
  }
  onUpstreamError(err: Error): void {
    this.reject(err);
  }
  onRequestBodyBytes(): void {}
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  return Promise.race([p, new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`no response in ${ms} ms`)), ms))]);
}

describe('Http1Pool', () => {
  it('serves the next request on a connection whose last response ended while reading was paused', async () => {
    const pool = new Http1Pool('127.0.0.1', port, {
      connectTimeoutMs: 1_000,
      maxConnections: 1,
      maxIdle: 1,
      events: { onConnectionOpen() {}, onConnectionClose() {}, onResetDeferred() {}, onPendingOverflow() {} },
      pending: new PendingLimit(1024),
    });
    const before = connections;
    try {
      const spec = () => ({ method: 'GET', path: '/', authority: 'test', scheme: 'http', headers: {}, body: null });
      // The whole response arrives in one read: the pause from its body and its end happen together.
      const first = new RecordingSink(true);
      pool.request(spec(), first);
      await withTimeout(first.done, 2_000);
      expect(first.body).toBe('hello');
      // That exchange is over, so nobody calls resume() on it: the pool itself must.

      const second = new RecordingSink(false);
      pool.request(spec(), second);
      await withTimeout(second.done, 2_000);
      expect(second.status).toBe(200);
      expect(second.body).toBe('hello');
      expect(connections - before).toBe(1);
    } finally {
      pool.destroy();
    }
  });
});

describe('Http1Pool: a request cancelled after it was sent (its client went away)', () => {
  const newPool = (): Http1Pool =>
    new Http1Pool('127.0.0.1', port, {
      connectTimeoutMs: 1_000,
      maxConnections: 4,
      maxIdle: 4,
      events: { onConnectionOpen() {}, onConnectionClose() {}, onResetDeferred() {}, onPendingOverflow() {} },
      pending: new PendingLimit(1024),
    });
  const spec = (path: string) => ({ method: 'GET', path, authority: 'test', scheme: 'http', headers: {}, body: null });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  /**
   * One request aborted `abortAfterMs` after it went out (as for a client gone, or with keepConnection false as
   * for a timeout), then (after `waitMs`) another: the connections opened for it, and those open after it.
   */
  async function abortThenAgain(path: string, abortAfterMs: number, waitMs: number, keepConnection = true): Promise<{ opened: number; open: number }> {
    const pool = newPool();
    try {
      // Connected and proved reusable first: the cancelled request goes out on a live keep-alive connection.
      const warm = new RecordingSink(false);
      pool.request(spec('/'), warm);
      await withTimeout(warm.done, 2_000);
      const before = connections;
      const cancelled = new RecordingSink(false);
      const stream = pool.request(spec(path), cancelled);
      await sleep(abortAfterMs);
      stream.abort(keepConnection);
      await sleep(waitMs);
      const next = new RecordingSink(false);
      pool.request(spec('/'), next);
      await withTimeout(next.done, 2_000);
      expect(next.body).toBe('hello');
      expect(cancelled.status, 'no sink callback after abort').toBe(0);
      return { opened: connections - before, open: pool.connections };
    } finally {
      pool.destroy();
    }
  }

  it('keeps the connection: the response is read to its end, dropped, and the connection serves the next request', async () => {
    // Without the discard the connection closes at abort() and the next request opens a new one (a new handshake
    // over mTLS).
    expect(await abortThenAgain('/later/150', 30, 300)).toEqual({ opened: 0, open: 1 });
  });

  it('closes it at once for a timeout (the upstream is slow; the close tells it to stop)', async () => {
    expect(await abortThenAgain('/later/150', 30, 300, false)).toEqual({ opened: 1, open: 1 });
  });

  it('closes it when the rest of the response is larger than the discard bound', async () => {
    expect(await abortThenAgain(`/later/100/${ABORT_DISCARD_MAX_BYTES * 4}`, 30, 400)).toEqual({ opened: 1, open: 1 });
  });

  it('closes it when the response has not ended within the discard time', async () => {
    // The cancelled one is closed, not still waiting beside the new one.
    expect(await abortThenAgain(`/later/${ABORT_DISCARD_MS + 800}`, 30, ABORT_DISCARD_MS + 200)).toEqual({ opened: 1, open: 1 });
  }, 10_000);
});

describe('Http1Pool: what it reads from a response head (keep-alive hint, body length), whatever the names\' case and order', () => {
  /**
   * An upstream that answers its n-th request (over all connections) with heads[n], an empty line and bodies[n];
   * connections are numbered in order of accept, and each request notes the one it came on.
   */
  async function scripted(heads: string[], bodies: string[]): Promise<{ port: number; on: number[]; close(): Promise<void> }> {
    const on: number[] = [];
    let accepted = 0;
    const sockets = new Set<net.Socket>();
    const srv = net.createServer((socket) => {
      const id = accepted++;
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
      let buffered = '';
      socket.on('data', (d) => {
        buffered += d.toString('latin1');
        let end: number;
        while ((end = buffered.indexOf('\r\n\r\n')) >= 0) {
          buffered = buffered.slice(end + 4);
          const n = on.length;
          on.push(id);
          socket.write(heads[n] + '\r\n' + bodies[n], 'latin1');
        }
      });
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return {
      port: (srv.address() as AddressInfo).port,
      on,
      close: async () => {
        for (const socket of sockets) socket.destroy();
        await new Promise<void>((r) => srv.close(() => r()));
      },
    };
  }

  const newPool = (upstreamPort: number): Http1Pool =>
    new Http1Pool('127.0.0.1', upstreamPort, {
      connectTimeoutMs: 1_000,
      maxConnections: 1,
      maxIdle: 1,
      events: { onConnectionOpen() {}, onConnectionClose() {}, onResetDeferred() {}, onPendingOverflow() {} },
      pending: new PendingLimit(1024),
    });
  const spec = () => ({ method: 'GET', path: '/', authority: 'test', scheme: 'http', headers: {}, body: null });

  async function get(pool: Http1Pool): Promise<RecordingSink> {
    const sink = new RecordingSink(false);
    pool.request(spec(), sink);
    await withTimeout(sink.done, 3_000);
    return sink;
  }

  it('closes a connection after a response whose Keep-Alive says timeout=0, wherever that line is and in any case', async () => {
    const upstream = await scripted(
      [
        'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nX-A: 1\r\nContent-Length: 2\r\n',
        // The position the last head had its keep-alive at now holds another name; the hint comes later, upper case.
        'HTTP/1.1 200 OK\r\nX-A: 1\r\nCONTENT-LENGTH: 2\r\nKEEP-ALIVE: timeout=0\r\nkeep-alive: timeout=9\r\n',
        'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n',
      ],
      ['aa', 'bb', 'cc'],
    );
    const pool = newPool(upstream.port);
    try {
      for (const body of ['aa', 'bb', 'cc']) expect((await get(pool)).body).toBe(body);
      // The first hint kept the connection for the second request; the second's first keep-alive line closed it.
      expect(upstream.on).toEqual([0, 0, 1]);
    } finally {
      pool.destroy();
      await upstream.close();
    }
  });

  it('reads a large body of an upper-case Content-Length around the parser, and a chunked one through it', async () => {
    const big = RAW_BODY_MIN_BYTES + 1000;
    const upstream = await scripted(
      [
        `HTTP/1.1 200 OK\r\nx-a: 1\r\nCONTENT-LENGTH: ${big}\r\n`,
        // Chunked framing where the last head had its content-length: the body is not taken for a raw one.
        'HTTP/1.1 200 OK\r\nx-a: 1\r\nTransfer-Encoding: chunked\r\n',
        'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n',
      ],
      ['a'.repeat(big), `${big.toString(16)}\r\n${'c'.repeat(big)}\r\n0\r\n\r\n`, 'ccc'],
    );
    const pool = newPool(upstream.port);
    const rawBefore = rawBodyStats.responses;
    try {
      expect((await get(pool)).body).toBe('a'.repeat(big));
      expect(rawBodyStats.responses - rawBefore).toBe(1);
      expect((await get(pool)).body).toBe('c'.repeat(big));
      expect(rawBodyStats.responses - rawBefore).toBe(1);
      expect((await get(pool)).body).toBe('ccc');
      expect(upstream.on).toEqual([0, 0, 0]);
    } finally {
      pool.destroy();
      await upstream.close();
    }
  });
});
