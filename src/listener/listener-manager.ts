// Listener manager: binds each Listener of the current config where its address says, hands every accepted
// connection to its HTTP or TCP chain (sniffing when the listener has both or an HTTP codec of AUTO), and on
// a config change binds new listeners, updates changed ones in place and drains removed ones.
import * as net from 'node:net';
import type { Direction, ListenerModel } from '../config/model.js';
import type { ClusterManager } from '../upstream/cluster-manager.js';
import { HttpConnectionManager } from '../http/connection-manager.js';
import { HttpContext, type ConfigHolder, type HttpStats } from '../http/context.js';
import { TcpSession, type TcpContext, type TcpStats } from '../tcp/tcp-proxy.js';
import { sniff, sniffTls } from './sniff.js';
import type * as tls from 'node:tls';
import type { HttpChainModel } from '../config/model.js';
import { TlsTerminator, type TerminatorOwner } from '../tls/terminator.js';
import type { TlsContexts } from '../tls/contexts.js';
import type { HandshakeFailureReporter } from '../tls/handshake-failures.js';
import type { ListenerStatus } from '../admin/types.js';
import type { OverloadState } from '../process/overload.js';
import { isRedirected, originalDestination, setOriginalDst } from './original-dst.js';
import { canonicalIp } from '../config/values.js';
import { AcceptPause, type AcceptPauseOwner } from './accept-pause.js';

/**
 * How long a connection may stay silent before a listener with a TCP chain stops waiting for HTTP, unless the
 * listener says (listener_filters_timeout with continue_on_listener_filters_timeout).
 */
const SNIFF_TIMEOUT_MS = 1_000;
const MAX_SNIFF_BYTES = 64;

/** Why a connection was closed before it carried anything. */
export type RejectReason = 'limit' | 'overload' | 'first_byte_timeout';

export interface ListenerStats extends HttpStats, TcpStats {
  connectionOpened(listener: string): void;
  /** The connection closed; the bytes are those not yet reported by connectionBytes. */
  connectionClosed(listener: string, bytesReceived: number, bytesSent: number): void;
  /** Bytes a live connection moved since it was last counted (reported when metrics are read). */
  connectionBytes(listener: string, bytesReceived: number, bytesSent: number): void;
  connectionRejected(listener: string, reason: RejectReason): void;
  /** The listener stopped accepting for a moment: the process is out of fds (see AcceptPause). */
  acceptPaused(listener: string): void;
  /** An HTTP/2 connection closed because nghttp2 had ended its session with GOAWAY (a protocol error or flood). */
  http2ProtocolClose(listener: string): void;
  /** An inbound connection's transport: mTLS terminated here, or plaintext. */
  connectionTransport(listener: string, transport: 'tls' | 'plaintext'): void;
}

export interface ListenerDeps {
  readonly config: ConfigHolder;
  readonly clusters: ClusterManager;
  readonly stats: ListenerStats;
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  readonly overload: OverloadState;
  /** Connections open at once per listener; past it new ones are closed at accept (Node's server.maxConnections). */
  readonly maxConnections: number;
  /** TLS termination for listeners with a DownstreamTlsContext; without it such a listener is refused. */
  readonly tls?: { readonly contexts: TlsContexts; readonly failures: HandshakeFailureReporter };
  /**
   * A worker of `--concurrency N`: listen through node:cluster, on the socket the primary holds for every worker
   * (exclusive: false). Elsewhere exclusive: true (the default outside cluster workers too).
   */
  readonly shared?: boolean;
}

/** ALPN a TLS listener offers: what its HTTP chain speaks, nothing for TCP only. */
function alpnFor(http: HttpChainModel | undefined): string[] {
  if (http === undefined) return [];
  return http.codec === 'http1' ? ['http/1.1'] : http.codec === 'http2' ? ['h2'] : ['h2', 'http/1.1'];
}

const kListener = Symbol('pillion.listener');
/** Bytes of the socket already counted in the listener's byte counters. */
const kCountedIn = Symbol('pillion.countedIn');
const kCountedOut = Symbol('pillion.countedOut');
type TaggedSocket = net.Socket & { [kListener]: ActiveListener; [kCountedIn]: number; [kCountedOut]: number };

function onSocketClose(this: TaggedSocket): void {
  this[kListener].connectionClosed(this);
}

/**
 * Every accepted socket has an 'error' listener from its first moment to its last, whoever owns it meanwhile
 * (sniffer, HTTP/1 connection, Upgrade, TCP session): a reset at any point must never be an unhandled 'error'
 * event, which ends the process. 'close' follows every error and does the cleanup.
 */
function onSocketError(): void {}

function onServerDrop(this: net.Server & { [kListener]: ActiveListener }): void {
  this[kListener].rejected('limit');
}

/**
 * A listening socket's errors are accept errors (EMFILE/ENFILE at the fd limit, ECONNABORTED): the connection
 * is lost, the listener carries on. Unhandled, one would end the process.
 */
function onServerError(this: net.Server & { [kListener]: ActiveListener }, err: NodeJS.ErrnoException): void {
  this[kListener].acceptFailed(err);
}

class ActiveListener implements TcpContext, TerminatorOwner, AcceptPauseOwner {
  readonly server: net.Server & { [kListener]: ActiveListener };
  boundPort = 0;
  private http: HttpConnectionManager | null = null;
  private httpKey = '';
  /** mTLS termination (STRICT or PERMISSIVE); null = plaintext only. */
  private terminator: TlsTerminator | null = null;
  private tlsKey = '';
  private readonly sockets = new Set<net.Socket>();
  private draining = false;
  /** From the first successful listen on: a listener that never bound (or binds no port) is never re-listened. */
  private acceptPause: AcceptPause | null = null;

  constructor(
    public model: ListenerModel,
    private readonly deps: ListenerDeps,
    /** Finds the listener an intercepted connection's original destination names (use_original_dst). */
    private readonly registry: { byDestination(direction: Direction, address: string, port: number): ActiveListener | undefined },
  ) {
    this.server = net.createServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: false }) as ActiveListener['server'];
    this.server[kListener] = this;
    this.server.maxConnections = deps.maxConnections;
    this.server.on('connection', (socket) => this.accept(socket));
    this.server.on('drop', onServerDrop);
    this.apply(model);
  }

  /** The TCP chain; only read by TCP sessions, which exist only on listeners that have one. */
  get chain(): TcpContext['chain'] {
    return this.model.tcp!;
  }

  get listenerName(): string {
    return this.model.name;
  }
  get clusters(): ClusterManager {
    return this.deps.clusters;
  }
  get stats(): TcpStats {
    return this.deps.stats;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: this.model.address, port: this.model.port, exclusive: this.deps.shared !== true }, () => {
        this.server.off('error', onError);
        this.server.on('error', onServerError);
        this.boundPort = (this.server.address() as net.AddressInfo).port;
        if (!this.draining) {
          this.acceptPause = new AcceptPause(this.server, () => ({ host: this.model.address, port: this.boundPort, exclusive: this.deps.shared !== true }), this);
        }
        resolve();
      });
    });
  }

  /** Same address, new chains: new connections and requests see them; connections in flight keep theirs. */
  apply(model: ListenerModel): void {
    this.model = model;
    this.applyTls(model);
    const chain = model.http;
    if (chain === undefined) {
      this.http = null;
      this.httpKey = '';
      return;
    }
    // Parser limits are fixed per server object: a change in them needs a new connection manager.
    const key = `${chain.maxRequestHeadersKb}/${chain.idleTimeoutMs}/${chain.requestTimeoutMs}/${chain.requestHeadersTimeoutMs}/${chain.maxConcurrentStreams}/${chain.maxHeadersCount}`;
    if (this.http !== null && key === this.httpKey) {
      this.http.context.chain = chain;
      return;
    }
    const direction: Direction = model.direction;
    const context = new HttpContext(chain, direction, this.deps.config, this.deps.clusters, this.deps.stats, this.deps.overload);
    this.http = new HttpConnectionManager(context, () => this.deps.stats.http2ProtocolClose(this.model.name));
    this.httpKey = key;
  }

  /** A changed TLS context makes a new terminator: connections made with the old one keep it. */
  private applyTls(model: ListenerModel): void {
    const t = model.tls;
    if (t === undefined) {
      this.terminator = null;
      this.tlsKey = '';
      return;
    }
    const alpn = alpnFor(model.http);
    const key = JSON.stringify(t) + alpn.join(',');
    if (this.terminator !== null && key === this.tlsKey) return;
    const deps = this.deps.tls;
    if (deps === undefined) throw new Error(`listener ${model.name}: has a TLS transport socket but the listener manager has no TLS contexts`);
    this.terminator = new TlsTerminator(t, alpn, deps.contexts, deps.failures, this);
    this.tlsKey = key;
  }

  /** The handshake is done and the peer accepted: the decrypted connection goes where ALPN or its bytes say. */
  secured(socket: tls.TLSSocket): void {
    this.deps.stats.connectionTransport(this.model.name, 'tls');
    const http = this.http;
    const alpn = socket.alpnProtocol;
    if (http !== null && (alpn === 'h2' || alpn === 'http/1.1')) {
      http.handle(socket, alpn === 'h2');
      return;
    }
    if (http === null) {
      new TcpSession(this, socket).start();
      return;
    }
    new Sniffer(this, socket, this.model, false).start();
  }

  countPlaintext(): void {
    this.deps.stats.connectionTransport(this.model.name, 'plaintext');
  }

  accept(socket: net.Socket): void {
    if (this.draining) {
      socket.destroy();
      return;
    }
    if (this.deps.overload.active) {
      // Envoy's stop_accepting_connections: closed before a byte is read, so the process stops growing.
      socket.destroy();
      this.rejected('overload');
      return;
    }
    // use_original_dst: a connection iptables redirected here belongs to the listener of its original destination;
    // with none, to this listener's own chains: sniffed HTTP by Host (the route table's catch-all passes it through
    // to the original destination, or answers 502 under REGISTRY_ONLY), anything else the TCP chain.
    if (this.model.useOriginalDst) {
      const dst = originalDestination(socket);
      if (dst !== undefined && isRedirected(socket, dst)) {
        setOriginalDst(socket, dst);
        // Same direction only: an inbound connection to this pod's own address must never take the outbound
        // listener of the pod's own service (it would loop back through the rules), nor an outbound one an inbound
        // port listener.
        const target = this.registry.byDestination(this.model.direction, dst.address, dst.port);
        if (target !== undefined && target !== this) return target.accept(socket);
      }
    }
    const tagged = socket as TaggedSocket;
    tagged[kListener] = this;
    tagged[kCountedIn] = 0;
    tagged[kCountedOut] = 0;
    socket.on('error', onSocketError);
    this.sockets.add(socket);
    socket.on('close', onSocketClose);
    this.deps.stats.connectionOpened(this.model.name);
    const terminator = this.terminator;
    if (terminator !== null) {
      // STRICT: TLS or nothing (a plaintext client fails the handshake, counted as not_tls). PERMISSIVE: sniffed.
      if (!terminator.model.plaintext) terminator.terminate(socket);
      else new Sniffer(this, socket, this.model, true).start();
      return;
    }
    if (this.model.direction === 'inbound') this.countPlaintext();
    const http = this.http;
    const tcp = this.model.tcp;
    if (http !== null && tcp === undefined && http.context.chain.codec === 'http1') {
      http.handle(socket, false);
      return;
    }
    if (http === null) {
      new TcpSession(this, socket).start();
      return;
    }
    new Sniffer(this, socket, this.model, false).start();
  }

  rejected(reason: RejectReason): void {
    this.deps.stats.connectionRejected(this.model.name, reason);
  }

  private acceptErrorLogged = false;

  acceptFailed(err: NodeJS.ErrnoException): void {
    this.acceptPause?.onError(err);
    this.logAcceptProblem({ code: err.code, error: err.message });
  }

  /** AcceptPauseOwner: the listening socket closed for a moment (out of fds). */
  acceptPaused(ms: number): void {
    this.deps.stats.acceptPaused(this.model.name);
    this.logAcceptProblem({ code: 'EMFILE', pauseMs: ms });
  }

  private logAcceptProblem(fields: object): void {
    // Once per listener: at the fd limit this repeats for every connection attempt.
    if (this.acceptErrorLogged) return;
    this.acceptErrorLogged = true;
    this.deps.log.warn(
      { listener: this.model.name, ...fields },
      'cannot accept connections (the first such problem; later ones are not logged): out of file descriptors, the listener stops accepting for 0.25 - 4 s at a time until fds are free (raise ulimit -n); or another accept error',
    );
  }

  dispatch(socket: net.Socket, first: Buffer | null, kind: 'h1' | 'h2' | 'tcp' | 'tls'): void {
    if (first !== null) socket.unshift(first);
    if (kind === 'tls') {
      // The terminator is there: only a PERMISSIVE listener's sniffer decides 'tls'.
      this.terminator!.terminate(socket);
      return;
    }
    const http = this.http;
    if (kind === 'tcp' && this.model.tcp !== undefined) {
      new TcpSession(this, socket).start();
      return;
    }
    if (http === null) {
      socket.destroy();
      return;
    }
    // The HTTP/1 connection reads the pushed-back bytes itself, then takes the socket's reads natively.
    http.handle(socket, kind === 'h2');
  }

  connectionClosed(socket: net.Socket): void {
    this.sockets.delete(socket);
    const tagged = socket as TaggedSocket;
    this.deps.stats.connectionClosed(this.model.name, socket.bytesRead - tagged[kCountedIn], socket.bytesWritten - tagged[kCountedOut]);
  }

  /**
   * Adds what the live connections moved since last time to the byte counters: called when metrics are read, so
   * a busy keep-alive connection shows its traffic at every scrape instead of at its close, at no cost per byte.
   */
  reportBytes(): void {
    let received = 0;
    let sent = 0;
    for (const socket of this.sockets) {
      const tagged = socket as TaggedSocket;
      const read = socket.bytesRead;
      const written = socket.bytesWritten;
      received += read - tagged[kCountedIn];
      sent += written - tagged[kCountedOut];
      tagged[kCountedIn] = read;
      tagged[kCountedOut] = written;
    }
    if (received > 0 || sent > 0) this.deps.stats.connectionBytes(this.model.name, received, sent);
  }

  status(): ListenerStatus {
    // An unbound listener (reached by hand-off) shows the address and port it stands for.
    return { name: this.model.name, address: this.model.address, port: this.model.bindToPort ? this.boundPort : this.model.port, direction: this.model.direction };
  }

  private drained: Promise<void> | null = null;

  /**
   * Stops accepting, lets requests in flight finish, and resolves when the last connection closes. Idempotent: an
   * inbound-only drain followed by the full one drains this listener once.
   */
  drain(timeoutMs: number): Promise<void> {
    this.drained ??= this.drainOnce(timeoutMs);
    return this.drained;
  }

  private async drainOnce(timeoutMs: number): Promise<void> {
    this.draining = true;
    this.acceptPause?.stop();
    if (this.server.listening) this.server.close();
    this.http?.drain();
    if (this.sockets.size === 0) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        for (const socket of this.sockets) socket.destroy();
        resolve();
      }, timeoutMs);
      const check = setInterval(() => {
        if (this.sockets.size > 0) return;
        clearInterval(check);
        clearTimeout(timer);
        resolve();
      }, 50);
      timer.unref();
      check.unref();
    });
  }

  destroy(): void {
    this.acceptPause?.stop();
    this.server.close();
    for (const socket of this.sockets) socket.destroy();
  }
}

/**
 * Reads a connection's first bytes to pick its chain, then pushes them back for the chosen parser. With a TCP
 * chain, silence becomes TCP (server-first protocols: the client waits for the server to speak) after the
 * listener's listener_filters_timeout when it has continue_on_listener_filters_timeout, else after a second;
 * without a TCP chain, a connection that stays silent until the listener's first-byte deadline is closed.
 */
class Sniffer {
  private readonly hasTcp: boolean;
  private buffered: Buffer | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly onData = (chunk: Buffer): void => this.data(chunk);
  // Listeners allow half-open sockets (TCP needs them), so a client that hangs up before we have decided
  // would otherwise leave a socket that never closes.
  private readonly onEnd = (): void => this.abandon();

  constructor(
    private readonly listener: ActiveListener,
    private readonly socket: net.Socket,
    private readonly model: ListenerModel,
    /** The raw connection on a PERMISSIVE port: a TLS ClientHello goes to the terminator, the rest is plaintext. */
    private readonly permissive: boolean,
  ) {
    this.hasTcp = model.tcp !== undefined;
  }

  start(): void {
    this.socket.on('data', this.onData);
    this.socket.once('end', this.onEnd);
    const m = this.model;
    // Server-first protocols (SMTP, MySQL) never speak first: after a while, they must be TCP. A timeout of 0
    // with continue_on_listener_filters_timeout waits for the client for ever (Envoy's meaning of 0).
    if (this.hasTcp) {
      const ms = m.continueOnFiltersTimeout === true ? m.firstByteTimeoutMs : SNIFF_TIMEOUT_MS;
      if (ms > 0) this.timer = setTimeout(() => this.decide('tcp'), ms);
    } else if (m.firstByteTimeoutMs > 0) this.timer = setTimeout(() => this.timedOut(), m.firstByteTimeoutMs);
  }

  private timedOut(): void {
    this.listener.rejected('first_byte_timeout');
    this.abandon();
  }

  private data(chunk: Buffer): void {
    const buf = this.buffered === null ? chunk : Buffer.concat([this.buffered, chunk]);
    this.buffered = buf;
    if (this.permissive) {
      const t = sniffTls(buf);
      if (t === 'more') return;
      if (t === 'tls') return this.decide('tls');
    }
    const kind = sniff(buf);
    if (kind !== 'more') this.decide(kind);
    else if (buf.length >= MAX_SNIFF_BYTES) this.decide('tcp');
  }

  private abandon(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.socket.destroy();
  }

  private decide(kind: 'h1' | 'h2' | 'tcp' | 'tls'): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.socket.off('data', this.onData);
    this.socket.off('end', this.onEnd);
    this.socket.pause();
    if (this.permissive && kind !== 'tls') this.listener.countPlaintext();
    // Without a TCP chain, anything that is not HTTP/2 goes to the HTTP/1 parser (which answers 400).
    const chosen = kind === 'tcp' && !this.hasTcp ? 'h1' : kind;
    this.listener.dispatch(this.socket, this.buffered, chosen);
  }
}

/** The key of a listener that is reached by hand-off: its direction, address (one spelling) and port. */
function destinationKey(direction: Direction, address: string, port: number): string {
  return `${direction}|${canonicalIp(address)}|${port}`;
}

export class ListenerManager {
  private readonly active = new Map<string, ActiveListener>();
  /** Listeners with bind_to_port false, by destinationKey: where use_original_dst hands connections. */
  private byAddress = new Map<string, ActiveListener>();

  /**
   * The bind_to_port false listener of this direction, address and port, else of the wildcard address on the port
   * (`::` takes both families, as a dual-stack bind does; `0.0.0.0` IPv4 only).
   */
  byDestination(direction: Direction, address: string, port: number): ActiveListener | undefined {
    if (this.byAddress.size === 0) return undefined;
    // The kernel writes original destinations in the one spelling destinationKey gives the listeners' addresses.
    return (
      this.byAddress.get(`${direction}|${address}|${port}`) ??
      this.byAddress.get(`${direction}|::|${port}`) ??
      (address.includes(':') ? undefined : this.byAddress.get(`${direction}|0.0.0.0|${port}`))
    );
  }

  /** Brings the byte counters up to date with every live connection (see ActiveListener.reportBytes). */
  reportBytes(): void {
    for (const listener of this.active.values()) listener.reportBytes();
  }

  constructor(private readonly deps: ListenerDeps) {}

  /** Brings the bound listeners in line with `models`. Rejects if a new listener cannot bind. */
  async update(models: ReadonlyMap<string, ListenerModel>): Promise<void> {
    const binds: Promise<void>[] = [];
    for (const [name, model] of models) {
      const existing = this.active.get(name);
      if (existing !== undefined && existing.model.address === model.address && existing.model.port === model.port && existing.model.bindToPort === model.bindToPort) {
        existing.apply(model);
        continue;
      }
      if (existing !== undefined) {
        this.active.delete(name);
        existing.drain(DRAIN_TIMEOUT_MS).catch((err: unknown) => this.drainFailed(name, err));
      }
      const listener = new ActiveListener(model, this.deps, this);
      this.active.set(name, listener);
      if (this.drainScope === 'all' || (this.drainScope === 'inbound' && model.direction === 'inbound')) {
        // A config change while draining (an inbound-only drain leaves xDS running) must not reopen the door.
        listener.drain(0).catch((err: unknown) => this.drainFailed(name, err));
        continue;
      }
      // Reached only by hand-off from a use_original_dst listener (Envoy's bind_to_port false).
      if (!model.bindToPort) continue;
      binds.push(
        listener.listen().then(
          () => this.deps.log.info({ listener: name, address: model.address, port: listener.boundPort }, 'listening'),
          (err: Error) => {
            this.active.delete(name);
            throw new Error(`listener ${name}: cannot bind ${model.address}:${model.port}: ${err.message}`);
          },
        ),
      );
    }
    for (const [name, listener] of this.active) {
      if (models.has(name)) continue;
      this.active.delete(name);
      this.deps.log.info({ listener: name }, 'listener removed: draining');
      listener.drain(DRAIN_TIMEOUT_MS).catch((err: unknown) => this.drainFailed(name, err));
    }
    const byAddress = new Map<string, ActiveListener>();
    for (const l of this.active.values()) if (!l.model.bindToPort) byAddress.set(destinationKey(l.model.direction, l.model.address, l.model.port), l);
    this.byAddress = byAddress;
    const results = await Promise.allSettled(binds);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  private drainFailed(name: string, err: unknown): void {
    this.deps.log.warn({ listener: name, err: err instanceof Error ? err.message : String(err) }, 'listener drain failed');
  }

  status(): ListenerStatus[] {
    return [...this.active.values()].map((l) => l.status());
  }

  /** What drain has covered so far: nothing, the inbound listeners, or all. */
  private drainScope: 'none' | 'inbound' | 'all' = 'none';

  /**
   * Drains the listeners of `scope`. Inbound only (the preStop drain, Envoy's /drain_listeners?inboundonly): no new
   * connections from other pods while the outbound listeners keep serving the app, which may still call out while
   * it shuts down.
   */
  async drain(timeoutMs: number, scope: 'inbound' | 'all' = 'all'): Promise<void> {
    if (this.drainScope !== 'all') this.drainScope = scope;
    const listeners = [...this.active.values()].filter((l) => scope === 'all' || l.model.direction === 'inbound');
    await Promise.all(listeners.map((l) => l.drain(timeoutMs)));
  }

  destroy(): void {
    for (const listener of this.active.values()) listener.destroy();
    this.active.clear();
  }
}

/** How long a removed listener's connections get to finish (Envoy's drain time defaults to 600 s; ours is shorter). */
export const DRAIN_TIMEOUT_MS = 30_000;
