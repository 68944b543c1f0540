// HTTP connection manager of one listener chain: takes the sockets the listener hands it, HTTP/1.x on our own
// connection class (src/http/h1-connection.ts), HTTP/2 (prior knowledge) on Node's http2 server, and starts an
// exchange per request. It also enforces the request-headers deadline of its HTTP/1 connections, with one
// sweep a second over them rather than a timer per request (node:http's server does the same), and in the same
// sweep closes the HTTP/2 connections that Node's http2 layer has finished with but never closes.
import * as http2 from 'node:http2';
import type { Socket } from 'node:net';
import { HttpExchange } from './exchange.js';
import type { HttpContext } from './context.js';
import { H1Connection, type HeadClock } from './h1-connection.js';
import { nghttp2Finished } from './nghttp2-finished.js';
import { CONNECTION_WINDOW_BYTES } from '../upstream/http2-pool.js';

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

function sweepConnections(manager: HttpConnectionManager): void {
  manager.sweep();
}

function onH2SessionError(): void {
  // A protocol error on one connection: nghttp2 already sent GOAWAY and Node destroys the session.
}

/** A downstream HTTP/2 connection: its session, and the socket under it (a destroyed session forgets it). */
class H2Connection {
  /** A sweep found the connection over: the next one cuts it. */
  ended = false;
  constructor(
    readonly session: http2.ServerHttp2Session,
    readonly socket: Socket,
  ) {}
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
  private readonly h2Connections = new Set<H2Connection>();
  /** The socket being handed to the http2 server, whose 'session' event comes synchronously. */
  private h2Socket: Socket | null = null;

  constructor(
    readonly context: HttpContext,
    /** Counts an HTTP/2 connection closed because nghttp2 had ended its session (a protocol error or flood). */
    private readonly onH2ProtocolClose: () => void = () => {},
  ) {
    const chain = context.chain;

    this.h2 = http2.createServer({
      maxSessionMemory: 64,
      settings: { maxHeaderListSize: chain.maxRequestHeadersKb * 1024, maxConcurrentStreams: chain.maxConcurrentStreams },
      // Header lines per request; the pseudo headers count too (Node's minimum is 4).
      maxHeaderListPairs: chain.maxHeadersCount + 4,
    }) as WithContext<http2.Http2Server>;
    this.h2[kContext] = context;
    this.h2.on('stream', onH2Stream);
    this.h2.on('sessionError', onH2SessionError);
    this.h2.on('session', (session: http2.ServerHttp2Session) => {
      const socket = this.h2Socket!;
      // A wider connection window than the protocol's 64 KiB default (see CONNECTION_WINDOW_BYTES).
      session.setLocalWindowSize(CONNECTION_WINDOW_BYTES);
      const connection = new H2Connection(session, socket);
      this.h2Connections.add(connection);
      // The socket's 'close' is the last event of a connection (the session's comes before or with it).
      socket.once('close', () => this.h2Connections.delete(connection));
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
      this.h2Socket = socket;
      this.h2.emit('connection', socket);
      this.h2Socket = null;
      this.startSweep();
    } else {
      if (this.context.chain.requestHeadersTimeoutMs > 0) this.startSweep();
      const connection = new H1Connection(this.context, socket, this.forgetH1, this);
      this.h1Connections.add(connection);
      connection.start();
    }
  }

  private startSweep(): void {
    if (this.sweepTimer !== null) return;
    this.nowMs = performance.now();
    this.sweepTimer = setInterval(sweepConnections, HEAD_SWEEP_MS, this);
    this.sweepTimer.unref();
  }

  /**
   * Connections whose request head is overdue get a 408; HTTP/2 connections that are over but still open are
   * closed (see sweepH2). The sweep stops while there are no connections.
   */
  sweep(): void {
    const now = performance.now();
    this.nowMs = now;
    for (const connection of this.h1Connections) {
      if (connection.headDeadlineMs !== 0 && now >= connection.headDeadlineMs) connection.onHeadersTimeout();
    }
    for (const connection of this.h2Connections) this.sweepH2(connection);
    if (this.h1Connections.size === 0 && this.h2Connections.size === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }

  /**
   * An HTTP/2 connection whose session is over must not outlive it. nghttp2 ended the session (GOAWAY sent for a
   * protocol error or flood, see nghttp2Finished): counted, and our side closed (FIN behind the GOAWAY). Node
   * destroyed the session (an error, a graceful close done): its socket normally closes at once, but waits for
   * the peer's FIN (graceful close) or for its last writes to drain (a peer that does not read), and the
   * session's idle timeout no longer runs. Either way the socket is cut one sweep later (1 s of grace).
   */
  private sweepH2(connection: H2Connection): void {
    if (connection.ended) {
      connection.socket.destroy();
      return;
    }
    const session = connection.session;
    if (session.destroyed) connection.ended = true;
    else if (!session.closed && nghttp2Finished(session)) {
      connection.ended = true;
      this.onH2ProtocolClose();
      connection.socket.end();
    }
  }

  /** Stop keep-alive on HTTP/1 (responses carry `connection: close`), GOAWAY on HTTP/2, close idle sockets. */
  drain(): void {
    this.context.draining = true;
    for (const connection of this.h1Connections) connection.drain();
    for (const connection of this.h2Connections) connection.session.close();
  }
}
