// HTTP connection manager of one listener chain: parses HTTP/1.1 and HTTP/2 (prior knowledge) on sockets the
// listener hands it, answers malformed requests itself, and starts an exchange per request.
import * as http from 'node:http';
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { REASONS, type Reason } from '../reasons.js';
import { HttpExchange } from './exchange.js';
import type { HttpContext } from './context.js';
import { proxyUpgrade } from './upgrade.js';
import { rawLocalReply } from './raw-reply.js';

const kContext = Symbol('pillion.httpContext');
type WithContext<T> = T & { [kContext]: HttpContext };

/** Envoy's default downstream idle timeout (1 h) keeps app connection pools from racing our close. */
const DEFAULT_IDLE_TIMEOUT_MS = 3_600_000;

function onH1Request(this: WithContext<http.Server>, req: http.IncomingMessage, res: http.ServerResponse): void {
  new HttpExchange(this[kContext]).startH1(req, res);
}

function onH2Stream(
  this: WithContext<http2.Http2Server>,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  flags: number,
): void {
  new HttpExchange(this[kContext]).startH2(stream, headers, flags);
}

function onH1Upgrade(this: WithContext<http.Server>, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  proxyUpgrade(this[kContext], req, socket as Socket, head);
}

function onH1ClientError(this: WithContext<http.Server>, err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const reason: Reason =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? REASONS.headersTooLarge
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? REASONS.requestTimeout
        : REASONS.badRequest;
  this[kContext].stats.localReply(reason);
  // The parser is in an unknown state after an error: answer and close (RFC 9112 §9.6 lets us).
  socket.end(rawLocalReply(reason));
}

function onH2SessionError(): void {
  // A protocol error on one connection: nghttp2 already sent GOAWAY; nothing else to do.
}

export class HttpConnectionManager {
  private readonly h1: WithContext<http.Server>;
  private readonly h2: WithContext<http2.Http2Server>;
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();

  constructor(readonly context: HttpContext) {
    const chain = context.chain;
    this.h1 = http.createServer({
      maxHeaderSize: chain.maxRequestHeadersKb * 1024,
      keepAliveTimeout: chain.idleTimeoutMs > 0 ? chain.idleTimeoutMs : DEFAULT_IDLE_TIMEOUT_MS,
      requestTimeout: chain.requestTimeoutMs,
      noDelay: true,
    }) as WithContext<http.Server>;
    this.h1[kContext] = context;
    this.h1.on('request', onH1Request);
    this.h1.on('upgrade', onH1Upgrade);
    this.h1.on('clientError', onH1ClientError);

    this.h2 = http2.createServer({
      maxSessionMemory: 64,
      settings: { maxHeaderListSize: chain.maxRequestHeadersKb * 1024 },
    }) as WithContext<http2.Http2Server>;
    this.h2[kContext] = context;
    this.h2.on('stream', onH2Stream);
    this.h2.on('sessionError', onH2SessionError);
    this.h2.on('session', (session: http2.ServerHttp2Session) => {
      this.h2Sessions.add(session);
      session.once('close', () => this.h2Sessions.delete(session));
      if (context.draining) session.close();
    });
    if (chain.idleTimeoutMs > 0) this.h2.setTimeout(chain.idleTimeoutMs);
  }

  /** Takes over a connection whose first bytes (already pushed back with unshift) showed its codec. */
  handle(socket: Socket, http2Preface: boolean): void {
    if (http2Preface) this.h2.emit('connection', socket);
    else this.h1.emit('connection', socket);
  }

  /** Stop keep-alive on HTTP/1 (responses carry `connection: close`), GOAWAY on HTTP/2, close idle sockets. */
  drain(): void {
    this.context.draining = true;
    this.h1.closeIdleConnections();
    for (const session of this.h2Sessions) session.close();
  }
}
