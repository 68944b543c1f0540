// Test tools for src/h2: owners that record what a session reports, and helpers to put H2Session on real
// sockets (127.0.0.1) as client or server. Used only by tests and the micro-benchmark.
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { HeaderMap } from '../../src/http/headers.js';
import type { DecodedHead } from '../../src/h2/hpack.js';
import { H2Session, type H2SessionOptions, type H2SessionOwner } from '../../src/h2/session.js';
import type { H2Stream, H2StreamOwner } from '../../src/h2/stream.js';
import type { Reason } from '../../src/reasons.js';

export const TEST_OPTIONS: H2SessionOptions = { maxConcurrentStreams: 100, maxHeaderListSize: 16_384, maxHeaderCount: 100 };

/** Records one stream's events; `done` resolves at onEnd (or onHead with endStream) or onReset. */
export class StreamRecorder implements H2StreamOwner {
  head: DecodedHead | null = null;
  readonly chunks: Buffer[] = [];
  trailers: HeaderMap | null = null;
  ended = false;
  reset: { code: number; why: string } | null = null;
  drains = 0;
  readonly done: Promise<void>;
  private resolve!: () => void;
  onDrainHook: ((stream: H2Stream) => void) | null = null;
  onDataHook: ((stream: H2Stream, chunk: Buffer) => void) | null = null;

  constructor() {
    this.done = new Promise((r) => (this.resolve = r));
  }
  get body(): Buffer {
    return Buffer.concat(this.chunks);
  }
  onHead(_stream: H2Stream, head: DecodedHead, endStream: boolean): void {
    this.head = head;
    if (endStream) {
      this.ended = true;
      this.resolve();
    }
  }
  onData(stream: H2Stream, chunk: Buffer): void {
    this.chunks.push(chunk);
    this.onDataHook?.(stream, chunk);
  }
  onEnd(_stream: H2Stream, trailers: HeaderMap | null): void {
    this.trailers = trailers;
    this.ended = true;
    this.resolve();
  }
  onReset(_stream: H2Stream, code: number, why: string): void {
    this.reset = { code, why };
    this.resolve();
  }
  onDrain(stream: H2Stream): void {
    this.drains++;
    this.onDrainHook?.(stream);
  }
}

/** Records session events; `settled` resolves at the first SETTINGS, `closed` at onSessionClose. */
export class SessionRecorder implements H2SessionOwner {
  settingsSeen = 0;
  goaway: { code: number; last: number } | null = null;
  close: { error: Error | null; sentGoawayCode: number } | null = null;
  refusedHeads: string[] = [];
  readonly settled: Promise<void>;
  readonly closed: Promise<void>;
  private settledResolve!: () => void;
  private closedResolve!: () => void;
  /** Server role: called for each request (the test answers it). */
  onRequest: ((session: H2Session, stream: H2Stream, head: DecodedHead, endStream: boolean) => void) | null = null;

  constructor() {
    this.settled = new Promise((r) => (this.settledResolve = r));
    this.closed = new Promise((r) => (this.closedResolve = r));
  }
  onStream(session: H2Session, stream: H2Stream, head: DecodedHead, endStream: boolean): void {
    if (this.onRequest !== null) this.onRequest(session, stream, head, endStream);
    else stream.reset(8);
  }
  onRemoteSettings(): void {
    this.settingsSeen++;
    this.settledResolve();
  }
  onGoaway(_session: H2Session, code: number, last: number): void {
    this.goaway = { code, last };
  }
  onSessionClose(_session: H2Session, error: Error | null, sentGoawayCode: number): void {
    this.close = { error, sentGoawayCode };
    this.closedResolve();
  }
  onRefusedHead(_session: H2Session, reason: Reason): void {
    this.refusedHeads.push(reason.id);
  }
}

/** Our client role on a fresh connection to 127.0.0.1:port; resolves once the peer's SETTINGS arrived. */
export async function connectH2(port: number, options: H2SessionOptions = TEST_OPTIONS): Promise<{ session: H2Session; rec: SessionRecorder }> {
  const socket = net.connect(port, '127.0.0.1');
  const rec = new SessionRecorder();
  const session = new H2Session(socket, 'client', options, rec);
  await Promise.race([rec.settled, rec.closed.then(() => Promise.reject(new Error(`connection closed: ${String(rec.close?.error)}`)))]);
  return { session, rec };
}

/** A server whose connections are our server role; `handler` answers each request. */
export async function listenH2(
  handler: (session: H2Session, stream: H2Stream, head: DecodedHead, endStream: boolean) => void,
  options: H2SessionOptions = TEST_OPTIONS,
): Promise<{ server: net.Server; port: number; sessions: H2Session[]; recorders: SessionRecorder[] }> {
  const sessions: H2Session[] = [];
  const recorders: SessionRecorder[] = [];
  const server = net.createServer((socket) => {
    const rec = new SessionRecorder();
    rec.onRequest = handler;
    recorders.push(rec);
    sessions.push(new H2Session(socket, 'server', options, rec));
  });
  server.on('error', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, port: (server.address() as AddressInfo).port, sessions, recorders };
}

/** Server handler: streams the request body back (pausing the request while the response is backed up); the
 *  request's trailers, if any, come back as response trailers. */
export function echoHandler(_session: H2Session, stream: H2Stream, head: DecodedHead, endStream: boolean): void {
  stream.respond(200, { 'x-echo-path': head.path }, endStream);
  if (!endStream) stream.owner = new Echo(stream);
}

class Echo implements H2StreamOwner {
  constructor(readonly stream: H2Stream) {}
  onHead(): void {}
  onData(stream: H2Stream, chunk: Buffer): void {
    if (!stream.write(chunk)) stream.pause();
  }
  onEnd(stream: H2Stream, trailers: HeaderMap | null): void {
    stream.end(trailers);
  }
  onReset(): void {}
  onDrain(stream: H2Stream): void {
    stream.resume();
  }
}

/** Writes `body` on `stream` in `chunkSize` pieces honouring write() === false / onDrain, then ends it. */
export function writeBody(stream: H2Stream, rec: StreamRecorder, body: Buffer, chunkSize: number, trailers: HeaderMap | null = null): void {
  let off = 0;
  const pump = (): void => {
    while (off < body.length) {
      const piece = body.subarray(off, Math.min(off + chunkSize, body.length));
      off += piece.length;
      if (!stream.write(piece)) return;
    }
    stream.end(trailers);
  };
  rec.onDrainHook = pump;
  pump();
}
