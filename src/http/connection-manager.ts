// HTTP connection manager of one listener chain: takes the sockets the listener hands it, HTTP/1.x on our own
// connection class (src/http/h1-connection.ts), HTTP/2 (prior knowledge) on our own HTTP/2 session (src/h2) in
// server role, and starts an exchange per request. One sweep a second enforces the request-headers deadline of
// its HTTP/1 connections and the idle timeout of its HTTP/2 ones, rather than a timer per request or connection.
import type { Socket } from 'node:net';
import { HttpExchange } from './exchange.js';
import type { HttpContext } from './context.js';
import { H1Connection, type HeadClock } from './h1-connection.js';
import { H2Session, type H2SessionOptions, type H2SessionOwner } from '../h2/session.js';
import type { H2Stream } from '../h2/stream.js';
import type { DecodedHead } from '../h2/hpack.js';
import type { Reason } from '../reasons.js';

/** A head deadline (or an idle timeout) fires within this much after it passes. */
const SWEEP_MS = 1_000;
/** The connection receive window we advertise downstream (streams keep the protocol's 64 KiB each). */
const H2_CONNECTION_WINDOW_BYTES = 1 << 20;

function sweepConnections(manager: HttpConnectionManager): void {
  manager.sweep();
}

/** A downstream HTTP/2 connection: the session's owner (its events reach the manager through it). */
class H2Connection implements H2SessionOwner {
  readonly session: H2Session;

  constructor(
    private readonly manager: HttpConnectionManager,
    socket: Socket,
    options: H2SessionOptions,
  ) {
    this.session = new H2Session(socket, 'server', options, this);
  }

  onStream(_session: H2Session, stream: H2Stream, head: DecodedHead, endStream: boolean): void {
    new HttpExchange(this.manager.context).startH2(stream, head, endStream);
  }

  onRemoteSettings(): void {
    // Client role only.
  }

  onGoaway(): void {
    // The client is leaving: the session takes no new streams, those open finish, then the session closes.
  }

  onSessionClose(_session: H2Session, _error: Error | null, sentGoawayCode: number): void {
    this.manager.forgetH2(this, sentGoawayCode);
  }

  onRefusedHead(_session: H2Session, reason: Reason): void {
    // A head the session answered itself (431 headers_too_large; RST_STREAM PROTOCOL_ERROR for a malformed one,
    // bad_request): counted with the local replies. No exchange was made for it, so no access log line.
    this.manager.context.stats.localReply(reason);
  }
}

export class HttpConnectionManager implements HeadClock {
  private readonly h1Connections = new Set<H1Connection>();
  /** performance.now() as of the last sweep: what a request's head deadline is counted from. */
  nowMs = 0;
  private sweepTimer: NodeJS.Timeout | null = null;
  private readonly forgetH1 = (connection: H1Connection): void => {
    this.h1Connections.delete(connection);
  };
  private readonly h2Connections = new Set<H2Connection>();

  constructor(
    readonly context: HttpContext,
    /** Counts an HTTP/2 connection the session ended with a GOAWAY for the client's misbehaviour (protocol error, flood). */
    private readonly onH2ProtocolClose: () => void = () => {},
  ) {}

  /** The settings of a new session: read from the chain per connection, so a chain update applies to new ones. */
  private h2Options(): H2SessionOptions {
    const chain = this.context.chain;
    return {
      maxConcurrentStreams: chain.maxConcurrentStreams,
      maxHeaderListSize: chain.maxRequestHeadersKb * 1024,
      // Header lines per request; the pseudo headers count too.
      maxHeaderCount: chain.maxHeadersCount + 4,
      connectionWindowSize: H2_CONNECTION_WINDOW_BYTES,
    };
  }

  /** Takes over a connection whose first bytes (already pushed back with unshift) showed its codec. */
  handle(socket: Socket, http2Preface: boolean): void {
    if (http2Preface) {
      // Listener sockets allow half-open (the TCP proxy needs it). HTTP/2 has no half-closed connection (GOAWAY is
      // its close): a client's FIN ends ours too, instead of leaving the socket in CLOSE-WAIT. Set before the
      // session reads the bytes the sniffer pushed back, so an 'end' queued behind them is seen too.
      socket.allowHalfOpen = false;
      const connection = new H2Connection(this, socket, this.h2Options());
      // A session whose socket was already gone may have reported its close inside the constructor: not kept.
      if (!connection.session.closeReported) this.h2Connections.add(connection);
      if (this.context.draining) connection.session.close();
      this.startSweep();
    } else {
      if (this.context.chain.requestHeadersTimeoutMs > 0) this.startSweep();
      const connection = new H1Connection(this.context, socket, this.forgetH1, this);
      this.h1Connections.add(connection);
      connection.start();
    }
  }

  /** The session is over (its socket destroyed): forgotten, and counted if it ended for the client's misbehaviour. */
  forgetH2(connection: H2Connection, sentGoawayCode: number): void {
    this.h2Connections.delete(connection);
    // NO_ERROR is our own graceful close (idle, drain), never the client's fault.
    if (sentGoawayCode > 0) this.onH2ProtocolClose();
  }

  private startSweep(): void {
    if (this.sweepTimer !== null) return;
    this.nowMs = performance.now();
    this.sweepTimer = setInterval(sweepConnections, SWEEP_MS, this);
    this.sweepTimer.unref();
  }

  /**
   * Connections whose request head is overdue get a 408; HTTP/2 connections idle past the listener's idle timeout
   * are closed (see sweepH2). The sweep stops while there are no connections.
   */
  sweep(): void {
    const now = performance.now();
    this.nowMs = now;
    for (const connection of this.h1Connections) {
      if (connection.headOverdue(now)) connection.onHeadersTimeout();
    }
    if (this.h2Connections.size > 0) {
      const idleMs = this.context.chain.idleTimeoutMs;
      for (const connection of this.h2Connections) this.sweepH2(connection, now, idleMs);
    }
    if (this.h1Connections.size === 0 && this.h2Connections.size === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }

  /**
   * An HTTP/2 connection with no open stream and no frame either way for the idle timeout gets GOAWAY and closes
   * (streams have their own stream idle timeout; the session bounds how long its socket lingers after GOAWAY).
   */
  private sweepH2(connection: H2Connection, now: number, idleMs: number): void {
    const session = connection.session;
    if (idleMs > 0 && session.activeStreams === 0 && now - session.lastActivityMs >= idleMs) session.close();
  }

  /** Stop keep-alive on HTTP/1 (responses carry `connection: close`), GOAWAY on HTTP/2, close idle sockets. */
  drain(): void {
    this.context.draining = true;
    for (const connection of this.h1Connections) connection.drain();
    for (const connection of this.h2Connections) connection.session.close();
  }
}
