// HTTP/1.1 connection pool for one endpoint: keep-alive connections (undici Clients, one request at a time
// each), a cap on idle connections, and a FIFO of requests waiting for a free connection.
import { IncomingMessage } from 'node:http';
import * as net from 'node:net';
import { PassThrough } from 'node:stream';
import type { Dispatcher, buildConnector } from 'undici';
// The Client module alone (see src/types/undici-client.d.ts): pinned to undici 7's file layout.
import Client from 'undici/lib/dispatcher/client.js';
import type { ConnectionPool, PoolOptions, UpstreamRequestSpec, UpstreamSink, UpstreamStream } from './pool.js';
import { headersFromRaw } from '../http/headers.js';

const ABORTED = new Error('request aborted by the proxy');

/**
 * One connection's request slot. It is the undici handler for whatever request the connection carries now,
 * so a request costs no handler allocation; `sink` tells which request that is.
 */
class Slot implements UpstreamStream {
  sink: UpstreamSink | null = null;
  private abortFn: ((err: Error) => void) | null = null;
  private resumeFn: (() => void) | null = null;
  private connected = false;
  readonly handler: Dispatcher.DispatchHandler;

  constructor(
    readonly pool: Http1Pool,
    readonly client: InstanceType<typeof Client>,
  ) {
    // undici's legacy handler interface is what its core calls directly (the newer one is wrapped per request).
    this.handler = this as unknown as Dispatcher.DispatchHandler;
    client.on('connect', () => {
      this.connected = true;
      pool.options.events.onConnectionOpen();
    });
    client.on('disconnect', () => {
      if (this.connected) pool.options.events.onConnectionClose();
      this.connected = false;
    });
  }

  start(spec: UpstreamRequestSpec, sink: UpstreamSink): void {
    this.sink = sink;
    this.abortFn = null;
    this.resumeFn = null;
    const headers = spec.headers;
    headers.host = spec.authority;
    // undici destroys a stream body it is done with. That is harmless for an HTTP/1 request (already read), but
    // destroying an HTTP/2 stream would also kill the response still to be written on it: hand undici a pipe.
    let body = spec.body;
    if (body !== null && !(body instanceof IncomingMessage)) body = body.pipe(new PassThrough());
    this.client.dispatch(
      { path: spec.path, method: spec.method, headers, body, bodyTimeout: 0, headersTimeout: 0 },
      this.handler,
    );
  }

  resume(): void {
    this.resumeFn?.();
  }

  abort(): void {
    const abort = this.abortFn;
    this.sink = null;
    if (abort !== null) abort(ABORTED);
  }

  // --- undici handler ---
  onConnect(abort: (err: Error) => void): void {
    this.abortFn = abort;
    // Aborted while undici still held it in its queue: cancel now that it can be.
    if (this.sink === null) abort(ABORTED);
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void): boolean {
    if (status < 200) return true;
    this.resumeFn = resume;
    const sink = this.sink;
    if (sink === null) return false;
    sink.onUpstreamHeaders(status, headersFromRaw(raw), false);
    return true;
  }

  onBodySent(chunk: Buffer | string): void {
    this.sink?.onRequestBodyBytes(typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length);
  }

  onData(chunk: Buffer): boolean {
    const sink = this.sink;
    if (sink === null) return false;
    return sink.onUpstreamData(chunk);
  }

  onComplete(rawTrailers: Buffer[] | null): void {
    const sink = this.sink;
    this.sink = null;
    this.pool.release(this);
    if (sink !== null) sink.onUpstreamEnd(rawTrailers !== null && rawTrailers.length > 0 ? headersFromRaw(rawTrailers) : null);
  }

  onError(err: Error): void {
    const sink = this.sink;
    this.sink = null;
    const connectFailed = !this.connected || isConnectError(err);
    this.pool.release(this);
    if (sink !== null && err !== ABORTED) sink.onUpstreamError(err, connectFailed);
  }
}

function isConnectError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return (
    code === 'ECONNREFUSED' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'EHOSTUNREACH' ||
    code === 'ENETUNREACH' ||
    code === 'EADDRNOTAVAIL'
  );
}

/**
 * Opens upstream TCP connections with a connect timeout that means what it says: undici's own timer ticks in
 * ~1 s steps, so a 250 ms connectTimeout would fire at 1 s.
 */
function connector(timeoutMs: number): buildConnector.connector {
  return (opts, callback) => {
    const host = opts.hostname.startsWith('[') ? opts.hostname.slice(1, -1) : opts.hostname;
    const socket = net.connect({ host, port: Number(opts.port), noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 });
    let timer: NodeJS.Timeout | null = null;
    const onError = (err: Error): void => {
      if (timer !== null) clearTimeout(timer);
      socket.off('connect', onConnect);
      callback(err, null);
    };
    const onConnect = (): void => {
      if (timer !== null) clearTimeout(timer);
      socket.off('error', onError);
      callback(null, socket);
    };
    socket.once('error', onError);
    socket.once('connect', onConnect);
    if (timeoutMs > 0) {
      timer = setTimeout(() => {
        socket.destroy(Object.assign(new Error(`connect timeout after ${timeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' }));
      }, timeoutMs);
    }
  };
}

interface Waiting {
  spec: UpstreamRequestSpec;
  sink: UpstreamSink;
  stream: QueuedStream;
}

/** Stands in for a slot while a request waits in the queue. */
class QueuedStream implements UpstreamStream {
  slot: Slot | null = null;
  cancelled = false;
  resume(): void {
    this.slot?.resume();
  }
  abort(): void {
    if (this.slot !== null) this.slot.abort();
    else this.cancelled = true;
  }
}

export class Http1Pool implements ConnectionPool {
  private readonly idle: Slot[] = [];
  private readonly all = new Set<Slot>();
  private readonly waiting: Waiting[] = [];
  private connections = 0;
  private draining = false;

  constructor(
    private readonly origin: string,
    readonly options: PoolOptions,
  ) {}

  get pending(): number {
    return this.waiting.length;
  }

  request(spec: UpstreamRequestSpec, sink: UpstreamSink): UpstreamStream {
    // LIFO: the most recently used connection is the one least likely to have been closed by the server.
    let slot = this.idle.pop();
    if (slot === undefined && this.connections < this.options.maxConnections) slot = this.open();
    if (slot !== undefined) {
      slot.start(spec, sink);
      return slot;
    }
    const stream = new QueuedStream();
    this.waiting.push({ spec, sink, stream });
    return stream;
  }

  release(slot: Slot): void {
    while (this.waiting.length > 0) {
      const next = this.waiting.shift()!;
      if (next.stream.cancelled) continue;
      next.stream.slot = slot;
      slot.start(next.spec, next.sink);
      return;
    }
    if (this.draining || this.idle.length >= this.options.maxIdle) {
      this.close(slot);
      return;
    }
    this.idle.push(slot);
  }

  drain(): void {
    this.draining = true;
    for (const slot of this.idle) this.close(slot);
    this.idle.length = 0;
  }

  destroy(): void {
    this.draining = true;
    this.idle.length = 0;
    for (const waiting of this.waiting) waiting.sink.onUpstreamError(new Error('connection pool closed'), true);
    this.waiting.length = 0;
    for (const slot of this.all) slot.client.destroy().catch(() => {});
    this.all.clear();
  }

  private open(): Slot {
    this.connections++;
    const client = new Client(this.origin, {
      connect: connector(this.options.connectTimeoutMs),
      pipelining: 1,
      // undici's 4 s idle timeout, shortened further by the server's Keep-Alive hint: reusing a socket the
      // server is about to close is the classic cause of spurious 503s.
    });
    const slot = new Slot(this, client);
    this.all.add(slot);
    return slot;
  }

  private close(slot: Slot): void {
    this.connections--;
    this.all.delete(slot);
    slot.client.close().catch(() => {});
  }
}
