// The HTTP/1.1 pool against a real server, driven by a sink that applies backpressure the way a slow client's
// exchange does (a stand-in for the exchange, which is not network code).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Http1Pool } from './http1-pool.js';
import { PendingLimit, type UpstreamSink } from './pool.js';
import type { HeaderMap } from '../http/headers.js';

let server: http.Server;
let port: number;
let connections = 0;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    res.setHeader('content-length', '5');
    res.end('hello');
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
