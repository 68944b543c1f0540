// The HTTP/2 pool against a real node:http2 server, driven by a recording sink (a stand-in for the exchange,
// which is not network code): the idle close after 60 s (interval timers and the clock faked; sockets real),
// drain and destroy.
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import * as http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { ERR, F, T, frame, headerBlock, headersFrames, startRawH2Server, type Frame } from '../../test/abuse/util.js';
import { PassThrough } from 'node:stream';
import { Http2Pool } from './http2-pool.js';
import { PendingLimit, type PoolEvents, type UpstreamRequestSpec, type UpstreamSink } from './pool.js';
import { newHeaderMap, type HeaderMap } from '../http/headers.js';

let server: http2.Http2Server;
let port: number;
const serverSessions = new Set<http2.ServerHttp2Session>();
let sessionsOpened = 0;

beforeAll(async () => {
  server = http2.createServer();
  server.on('session', (s) => {
    sessionsOpened++;
    serverSessions.add(s);
    s.on('close', () => serverSessions.delete(s));
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    // /hold: answered only when the client resets or the server closes.
    if (headers[':path'] === '/hold') return;
    stream.respond({ ':status': 200 });
    stream.end('hello');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});

afterEach(() => {
  vi.useRealTimers();
});

afterAll(async () => {
  for (const s of serverSessions) s.destroy();
  await new Promise<void>((r) => server.close(() => r()));
});

class RecordingSink implements UpstreamSink {
  status = 0;
  body = '';
  error: Error | null = null;
  connectFailed = false;
  readonly done: Promise<void>;
  private resolve!: () => void;
  constructor() {
    this.done = new Promise((resolve) => (this.resolve = resolve));
  }
  onUpstreamHeaders(status: number, _headers: HeaderMap): void {
    this.status = status;
  }
  onUpstreamData(chunk: Buffer): boolean {
    this.body += chunk.toString();
    return true;
  }
  dataReleased(): boolean {
    return true;
  }
  onUpstreamEnd(): void {
    this.resolve();
  }
  onUpstreamError(err: Error, connectFailed: boolean): void {
    this.error = err;
    this.connectFailed = connectFailed;
    this.resolve();
  }
  onRequestBodyBytes(): void {}
}

function counting(): PoolEvents & { opened: number; closed: number } {
  return {
    opened: 0,
    closed: 0,
    onConnectionOpen() {
      this.opened++;
    },
    onConnectionClose() {
      this.closed++;
    },
    onResetDeferred() {},
    onPendingOverflow() {},
  };
}

function newPool(events: PoolEvents, maxConnections = 4): Http2Pool {
  return new Http2Pool(`http://127.0.0.1:${port}`, { connectTimeoutMs: 1000, maxConnections, maxIdle: 1, events, pending: new PendingLimit(10) });
}

function get(path: string): UpstreamRequestSpec {
  return { method: 'GET', path, authority: 'test', scheme: 'http', headers: newHeaderMap(), body: null };
}

async function until(check: () => boolean, ms = 2000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!check() && Date.now() < end) await new Promise((r) => setImmediate(r));
  return check();
}

/** Timers keeping the event loop alive (unref'd ones are not listed). */
function refTimers(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
}

describe('Http2Pool', () => {
  it('a connect in progress does not keep the process alive: its timer is unref\'d, like the pooled socket', async () => {
    const pool = newPool(counting());
    const before = refTimers();
    const sink = new RecordingSink();
    pool.request(get('/'), sink); // opens a session: the connect (and its timer) is under way until the next turn
    expect(refTimers()).toBe(before);
    await sink.done;
    expect(sink.body).toBe('hello');
    pool.destroy();
  });

  it('closes a session 60 to 70 s after its last stream, not before', async () => {
    // Only the pool's interval and the clock it reads are faked: sockets, setTimeout and ticks stay real.
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    const events = counting();
    const pool = newPool(events);
    const sink = new RecordingSink();
    pool.request(get('/'), sink);
    await sink.done;
    expect(sink.body).toBe('hello');
    expect(pool.connections).toBe(1);
    vi.advanceTimersByTime(55_000);
    await new Promise((r) => setTimeout(r, 50));
    expect(pool.connections, 'still open after 55 s').toBe(1);
    vi.advanceTimersByTime(15_000);
    expect(await until(() => pool.connections === 0), 'closed by 70 s').toBe(true);
    expect(events.closed).toBe(1);
    pool.destroy();
  });

  it('drain: a busy session closes once its stream ends; a drained pool opens no session', async () => {
    const events = counting();
    const pool = newPool(events);
    const first = new RecordingSink();
    pool.request(get('/'), first);
    await first.done;
    const held = new RecordingSink();
    const stream = pool.request(get('/hold'), held);
    const idleSink = new RecordingSink();
    expect(pool.connections).toBe(1);
    pool.drain();
    await new Promise((r) => setTimeout(r, 100));
    expect(pool.connections, 'busy: kept for its stream').toBe(1);
    stream.abort();
    expect(await until(() => pool.connections === 0), 'closed once its stream ended').toBe(true);
    const opened = sessionsOpened;
    pool.request(get('/'), idleSink);
    await new Promise((r) => setTimeout(r, 100));
    expect(sessionsOpened, 'a drained pool opens nothing').toBe(opened);
    // The request waits; destroy fails it as a connect failure.
    pool.destroy();
    await idleSink.done;
    expect(idleSink.error?.message).toContain('connection pool closed');
    expect(idleSink.connectFailed).toBe(true);
  });

  it('drain: an idle session closes at once', async () => {
    const events = counting();
    const pool = newPool(events);
    const sink = new RecordingSink();
    pool.request(get('/'), sink);
    await sink.done;
    expect(pool.connections).toBe(1);
    pool.drain();
    expect(await until(() => pool.connections === 0, 500)).toBe(true);
    expect(events.closed).toBe(1);
  });

  it('destroy: a request in flight fails as a reset (not a connect failure), the session closes', async () => {
    const events = counting();
    const pool = newPool(events, 1);
    const warm = new RecordingSink();
    pool.request(get('/'), warm);
    await warm.done;
    const held = new RecordingSink();
    pool.request(get('/hold'), held);
    await new Promise((r) => setTimeout(r, 50));
    pool.destroy();
    await held.done;
    expect(held.error?.message).toMatch(/^the upstream HTTP\/2 stream was reset: .*the connection pool was closed/);
    expect(held.connectFailed).toBe(false);
    expect(await until(() => pool.connections === 0)).toBe(true);
  });

  it('a response complete before the request body ends closes the stream (RST_STREAM) even with the reset budget spent', async () => {
    // An upstream driven frame by frame, to see how the stream ends: RST_STREAM, or an END_STREAM on a cut body.
    const frames: Frame[] = [];
    let upSocket: Socket | null = null;
    const up = await startRawH2Server((socket, f) => {
      upSocket = socket;
      frames.push(f);
    });
    // The budget's clock is frozen: no token comes back while the test runs. Sockets and timers stay real.
    vi.useFakeTimers({ toFake: ['performance'] });
    const deferred = { n: 0 };
    const events = { ...counting(), onResetDeferred: () => deferred.n++ };
    const pool = new Http2Pool(`http://127.0.0.1:${up.port}`, { connectTimeoutMs: 1000, maxConnections: 4, maxIdle: 1, events, pending: new PendingLimit(10) });
    const body = new PassThrough();
    const sink = new RecordingSink();
    let upload: NodeJS.Timeout | null = null;
    try {
      pool.request({ method: 'POST', path: '/upload', authority: 'test', scheme: 'http', headers: newHeaderMap(), body }, sink);
      body.write('first');
      expect(await until(() => frames.some((f) => f.type === T.DATA && f.stream === 1))).toBe(true);
      // 200 cancels on the same connection spend its reset budget (200, then 20/s), each within it.
      for (let i = 0; i < 200; i++) pool.request(get('/hold'), new RecordingSink()).abort();
      expect(await until(() => frames.filter((f) => f.type === T.RST_STREAM).length === 200)).toBe(true);
      expect(deferred.n, 'budget spent, not yet exceeded').toBe(0);
      // The upstream answers the upload whole; the client keeps uploading, slowly.
      const answer = Buffer.concat([headersFrames(1, headerBlock([[':status', '200']]), false), frame(T.DATA, F.END_STREAM, 1, Buffer.from('answered'))]);
      upSocket!.write(answer);
      await sink.done;
      expect(sink.status).toBe(200);
      expect(sink.body).toBe('answered');
      upload = setInterval(() => body.write('more'), 20);
      const ended = (): Frame | undefined => frames.find((f) => f.stream === 1 && (f.type === T.RST_STREAM || (f.flags & F.END_STREAM) !== 0));
      expect(await until(() => ended() !== undefined, 2000), 'the upstream stream is closed while the upload goes on').toBe(true);
      const end = ended()!;
      expect(end.type, 'RST_STREAM, never an END_STREAM on a truncated body').toBe(T.RST_STREAM);
      expect(end.payload.readUInt32BE(0)).toBe(ERR.NO_ERROR);
      // Its slot is given back: the connection, which takes no new streams past the budget, closes once empty.
      expect(deferred.n).toBe(1);
      expect(await until(() => pool.connections === 0, 2000), 'the session closes once its streams are done').toBe(true);
    } finally {
      if (upload !== null) clearInterval(upload);
      body.end();
      pool.destroy();
      await up.close();
    }
  });
});
