// The contract between a request in flight (the sink) and the connection pool that carries it upstream.
import type { Readable } from 'node:stream';
import type { HeaderMap } from '../http/headers.js';
import type { UpstreamTlsConnector } from '../tls/upstream-tls.js';

/** What a pool needs to send one request. */
export interface UpstreamRequestSpec {
  method: string;
  /** Origin-form path with query. */
  path: string;
  authority: string;
  scheme: string;
  headers: HeaderMap;
  /** Request body stream, or null when the request has none. Its trailers: requestTrailersOf(body) at its 'end'. */
  body: Readable | null;
}

const kTrailers = Symbol('pillion.requestTrailers');
type WithTrailers = Readable & { [kTrailers]?: HeaderMap };

/**
 * Request trailers (an HTTP/2 client's trailing HEADERS) ride on the body stream: the downstream sets them before
 * the body's 'end', a pool reads them in its 'end' listener. A property, not an event, so a body that is held for
 * a replay can hand them on (src/http/router/replay-body.ts).
 */
export function setRequestTrailers(body: Readable, trailers: HeaderMap): void {
  (body as WithTrailers)[kTrailers] = trailers;
}

export function requestTrailersOf(body: Readable): HeaderMap | null {
  return (body as WithTrailers)[kTrailers] ?? null;
}

/**
 * A body's one consumer taking its chunks straight from the source, without the Readable in between (no push,
 * flowing-mode nextTicks, 'data'/'end' listeners): an HTTP/2 downstream's DATA handed to an HTTP/2 upstream
 * stream. Backpressure is the return value: false stops the source (its window is not credited) until the
 * consumer calls the source's resumeDirect().
 */
export interface DirectBodyConsumer {
  directData(chunk: Buffer): boolean;
  /** The body's end, with the request trailers to forward (or null). */
  directEnd(trailers: HeaderMap | null): void;
}

/** The source side of a direct hand-off. */
export interface DirectBodySource {
  /** Takes `consumer` as the only reader; false (the Readable path then) once anything went through the Readable. */
  attachDirect(consumer: DirectBodyConsumer): boolean;
  /** The consumer can take more again. */
  resumeDirect(): void;
  /** The consumer lets go: what the client still sends is dropped (and credited) as for a body nobody reads. */
  detachDirect(consumer: DirectBodyConsumer): void;
}

const kDirect = Symbol('pillion.directBody');
type WithDirect = Readable & { [kDirect]?: DirectBodySource };

/** Marks `body` as able to hand its chunks straight to one consumer (see DirectBodyConsumer). */
export function setDirectSource(body: Readable, source: DirectBodySource): void {
  (body as WithDirect)[kDirect] = source;
}

export function directSourceOf(body: Readable): DirectBodySource | null {
  return (body as WithDirect)[kDirect] ?? null;
}

/** How a pool reports back; implemented by the HTTP exchange. Methods are called at most once, but data. */
export interface UpstreamSink {
  /** Response head (1xx excluded). Returns false to pause the body until resume(). */
  onUpstreamHeaders(status: number, headers: HeaderMap, endStream: boolean): void;
  /** Returns false to apply backpressure (the pool pauses until the stream's resume() is called). */
  onUpstreamData(chunk: Buffer): boolean;
  /**
   * Whether nothing refers to the chunk last given to onUpstreamData any more (it went to the client's kernel
   * whole), so the pool may read into its buffer again; false makes the pool read into another one.
   */
  dataReleased(): boolean;
  onUpstreamEnd(trailers: HeaderMap | null): void;
  /** `connectFailed` is true when no connection could be made (Envoy's UF); else the stream was reset (UR). */
  onUpstreamError(err: Error, connectFailed: boolean): void;
  /** Request body bytes as they go upstream (the access log's bytes_received; chunked bodies have no length). */
  onRequestBodyBytes(bytes: number): void;
  /**
   * The request waits in the pool's queue for a connection (or HTTP/2 stream capacity): not sent, so not the
   * endpoint's time yet (the router's per-try timeout waits, as Envoy's starts only once the pool is ready).
   */
  onUpstreamQueued?(): void;
  /** The queued request got a connection and goes out now. */
  onUpstreamDequeued?(): void;
}

/** Handle on a request in flight, for the sink to steer it. */
export interface UpstreamStream {
  resume(): void;
  /**
   * Cancels the request upstream (client went away, timeout). No sink callback follows. `keepConnection`: the
   * client went away, nothing says the upstream is slow, so an HTTP/1.1 connection may read the rest of the
   * response and be reused (see ABORT_DISCARD_MS) rather than close; a timed-out try closes at once.
   */
  abort(keepConnection?: boolean): void;
}

export interface ConnectionPool {
  request(spec: UpstreamRequestSpec, sink: UpstreamSink): UpstreamStream;
  /** Requests waiting for a connection. */
  readonly pending: number;
  /** Connections open now (for /clusters' per-host cx_active). */
  readonly connections: number;
  /** Stops new requests; closes connections once their requests finish. */
  drain(): void;
  destroy(): void;
}

/**
 * Requests waiting for an upstream connection (or HTTP/2 stream capacity), across all of a cluster's pools:
 * Envoy's max_pending_requests circuit breaker. Past it a request fails at once with 503 overflow (UO) instead
 * of joining a queue that would grow without bound while every connection is busy.
 */
export class PendingLimit {
  count = 0;
  constructor(public max: number) {}

  /** Takes a place in the queue, or returns false when the queue is full. */
  tryAdd(): boolean {
    if (this.count >= this.max) return false;
    this.count++;
    return true;
  }

  remove(): void {
    this.count--;
  }
}

/** The `code` of the error a pool reports when PendingLimit refused a request. */
export const PENDING_OVERFLOW = 'ERR_PILLION_PENDING_OVERFLOW';

export function pendingOverflowError(max: number): Error {
  return Object.assign(new Error(`too many requests waiting for an upstream connection (max_pending_requests ${max})`), {
    code: PENDING_OVERFLOW,
  });
}

/**
 * Methods a lost request may be sent again with (RFC 9110 §9.2.2): the upstream may, after all, have acted on
 * the first copy before closing, and only for these is a second one harmless (the pool's and the router's replay).
 */
export const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/**
 * The `code` of the error an HTTP/1.1 pool reports for an idempotent request with a body that a reused keep-alive
 * connection lost before any byte of the response (the upstream closed it as the request went out): safe to send
 * again, but only the router holds the body to do it (a bodyless request is replayed by the pool itself).
 */
export const UPSTREAM_UNSEEN = 'ERR_PILLION_UPSTREAM_UNSEEN';

/** The error code of an HTTP/2 response whose head or trailers were malformed (we reset it PROTOCOL_ERROR). */
export const UPSTREAM_MALFORMED = 'ERR_PILLION_UPSTREAM_MALFORMED';

/** The handle of a request that was refused before it started: nothing to steer. */
export const REFUSED_STREAM: UpstreamStream = Object.freeze({ resume(): void {}, abort(): void {} });

export interface PoolEvents {
  onConnectionOpen(): void;
  onConnectionClose(): void;
  /** An HTTP/2 connection ran out of its reset budget and stopped taking new streams (see reset-budget.ts). */
  onResetDeferred(): void;
  /** A request was refused because the cluster's pending queue was full. */
  onPendingOverflow(): void;
}

export interface PoolOptions {
  /** Originates mTLS to the endpoint; null = plaintext. */
  readonly tls?: UpstreamTlsConnector | null;
  readonly connectTimeoutMs: number;
  readonly maxConnections: number;
  readonly maxIdle: number;
  readonly events: PoolEvents;
  /** Shared by every pool of the cluster. */
  readonly pending: PendingLimit;
}
