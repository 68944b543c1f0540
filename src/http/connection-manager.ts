// HTTP connection manager of one listener chain: takes the sockets the listener hands it, HTTP/1.x on our own
// connection class (src/http/h1-connection.ts), HTTP/2 (prior knowledge) on Node's http2 server, and starts an
// exchange per request. It also enforces the request-headers deadline of its HTTP/1 connections, with one
// sweep a second over them rather than a timer per request (node:http's server does the same).
import * as http2 from 'node:http2';
import type { Socket } from 'node:net';
import { HttpExchange } from './exchange.js';
import type { HttpContext } from './context.js';
import { H1Connection, type HeadClock } from './h1-connection.js';

/** A head deadline fires within this much after it passes. */
const HEAD_SWEEP_MS = 1_000;

const kContext = Symbol('pillion.httpContext');
type WithContext<T> = T & { [kContext]: HttpContext };

function onH2Stream(
  this: WithContext<http2.Http2Server>,
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  flags: number,
): void {
  new HttpExchange(this[kContext]).startH2(stream, headers, flags);
}

function sweepHeadDeadlines(manager: HttpConnectionManager): void {
  manager.sweep();
}

function onH2SessionError(): void {
  // A protocol error on one connection: nghttp2 already sent GOAWAY; nothing else to do.
}

export class HttpConnectionManager implements HeadClock {
  private readonly h1Connections = new Set<H1Connection>();
  /** performance.now() as of the last sweep: what a request's head deadline is counted from. */
  nowMs = 0;
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly forgetH1 = (connection: H1Connection): void => {
    this.h1Connections.delete(connection);
  };
  private readonly h2: WithContext<http2.Http2Server>;
  private readonly h2Sessions = new Set<http2.ServerHttp2Session>();

  constructor(readonly context: HttpContext) {
    const chain = context.chain;

    this.h2 = http2.createServer({
      maxSessionMemory: 64,
      settings: { maxHeaderListSize: chain.maxRequestHeadersKb * 1024, maxConcurrentStreams: chain.maxConcurrentStreams },
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
    if (http2Preface) {
      // Listener sockets allow half-open (the TCP proxy needs it), and Node's http2 session never ends on such a
      // socket's 'end': a client's FIN would leave the socket in CLOSE-WAIT, its session and streams open until
      // the idle timeout. HTTP/2 has no half-closed connection (GOAWAY is its close), so end ours on the client's
      // FIN. Set before the session reads the bytes the sniffer pushed back, so an 'end' queued behind them is
      // seen too.
      socket.allowHalfOpen = false;
      this.h2.emit('connection', socket);
    } else {
      if (this.sweepTimer === null && this.context.chain.requestHeadersTimeoutMs > 0) {
        this.nowMs = performance.now();
        this.sweepTimer = setInterval(sweepHeadDeadlines, HEAD_SWEEP_MS, this);
        this.sweepTimer.unref();
      }
      const connection = new H1Connection(this.context, socket, this.forgetH1, this);
      this.h1Connections.add(connection);
      connection.start();
    }
  }

  /** Connections whose request head is overdue get a 408; the sweep stops while there are no connections. */
  sweep(): void {
    const now = performance.now();
    this.nowMs = now;
    for (const connection of this.h1Connections) {
      if (connection.headDeadlineMs !== 0 && now >= connection.headDeadlineMs) connection.onHeadersTimeout();
    }
    if (this.h1Connections.size === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }

  /** Stop keep-alive on HTTP/1 (responses carry `connection: close`), GOAWAY on HTTP/2, close idle sockets. */
  drain(): void {
    this.context.draining = true;
    for (const connection of this.h1Connections) connection.drain();
    for (const session of this.h2Sessions) session.close();
  }
}
