// Opaque TCP proxy (Envoy's tcp_proxy filter): connect to an endpoint of the cluster, retrying another one on
// connect failure, then pipe both ways with half-close and backpressure until both sides are done.
import * as net from 'node:net';
import type { TcpChainModel } from '../config/model.js';
import { CLUSTER_OVERFLOW, type ClusterManager, type UpstreamCluster } from '../upstream/cluster-manager.js';
import type { EndpointState } from '../upstream/types.js';
import { REASONS, type Reason } from '../reasons.js';
import type { AuthzRequest } from '../authz/model.js';
import { connectionAllowed } from '../authz/network.js';
import { NO_AUTHZ_SINK, type AuthzSink } from '../authz/stats.js';
import type { PeerIdentity } from '../tls/peer.js';
import { socketPeer } from '../tls/downstream-peer.js';
import { readyEventOf } from '../tls/upstream-tls.js';
import { PEER_IDENTITY_ERROR, TLS_NOT_READY_ERROR } from '../tls/handshake-failures.js';
import { destinationPort, originalDstOf, unmapV4 } from '../listener/original-dst.js';
import { canReadRaw } from './raw-read.js';
import { SocketPump } from './socket-pump.js';

/** Envoy's max_connect_attempts is 1 by default; a sidecar retrying another endpoint is what users expect. */
const MAX_CONNECT_ATTEMPTS = 3;

export interface TcpStats {
  /** Where network RBAC counts (none: it counts nothing). */
  readonly authz?: AuthzSink;
  tcpSessionFinished(session: TcpSession): void;
}

export interface TcpContext {
  readonly chain: TcpChainModel;
  readonly listenerName: string;
  readonly clusters: ClusterManager;
  readonly stats: TcpStats;
}

export class TcpSession implements AuthzRequest {
  // What network RBAC sees of a connection: no HTTP request, so no method, path, headers or metadata.
  readonly method = '';
  readonly path = '';
  readonly requestHeaders = null;
  readonly filterMetadata = null;
  readonly startMs = Date.now();
  private readonly startNs = process.hrtime.bigint();
  private upstream: net.Socket | null = null;
  cluster: UpstreamCluster | null = null;
  endpoint: EndpointState | null = null;
  /** ORIGINAL_DST: the address:port dialed (no EndpointState). */
  passthroughHost: string | null = null;
  attempts = 0;
  reason: Reason | null = null;
  bytesReceived = 0;
  bytesSent = 0;
  durationSeconds = 0;
  /** Who mTLS proved the client to be; null on a plaintext connection (authorization reads it). */
  readonly peer: PeerIdentity | null;
  private connected = false;
  private finished = false;
  private downstreamClosed = false;
  private upstreamClosed = false;
  /** Null where the direction goes through pipe() (TLS) or never started. */
  private pumpIn: SocketPump | null = null;
  private pumpOut: SocketPump | null = null;

  constructor(
    private readonly ctx: TcpContext,
    readonly downstream: net.Socket,
  ) {
    this.peer = socketPeer(downstream)?.identity ?? null;
  }

  start(): void {
    const downstream = this.downstream;
    downstream.pause();
    downstream.on('error', () => downstream.destroy());
    downstream.on('close', () => {
      this.downstreamClosed = true;
      const upstream = this.upstream;
      if (upstream !== null && !this.upstreamClosed) {
        // A client that finished cleanly lets the upstream flush what it still has to write; a reset does not.
        // (end() on an already ended stream builds an Error, stack and all: skipped.)
        if (this.connected && downstream.readableEnded) {
          if (!upstream.writableEnded) upstream.end();
        } else upstream.destroy();
      }
      this.maybeFinish();
    });
    const idle = this.ctx.chain.idleTimeoutMs;
    if (idle > 0) downstream.setTimeout(idle, () => this.destroyBoth());
    // envoy.filters.network.rbac: decided before the upstream is dialled; a denied connection is closed.
    const rbac = this.ctx.chain.rbac;
    if (rbac !== undefined && !connectionAllowed(rbac, this, this.ctx.stats.authz ?? NO_AUTHZ_SINK)) return this.fail(REASONS.unauthorized);
    const cluster = this.ctx.clusters.get(this.ctx.chain.cluster);
    if (cluster === undefined) return this.fail(REASONS.noCluster);
    this.cluster = cluster;
    this.connectNext();
  }

  get localPort(): number {
    return destinationPort(this.downstream);
  }

  /** ORIGINAL_DST (PassthroughCluster): the one address dialed is where the client was going; no endpoint state. */
  private connectOriginalDst(): void {
    const dst = originalDstOf(this.downstream);
    // Envoy's original_dst cluster without an original destination (a direct, not redirected, connection): UH.
    if (dst === undefined) return this.fail(REASONS.noHealthyUpstream);
    this.attempts++;
    this.passthroughHost = dst.address.includes(':') ? `[${dst.address}]:${dst.port}` : `${dst.address}:${dst.port}`;
    const sources = this.cluster!.model.sourceAddresses;
    // A connection from our own bind source is our own passthrough redirected back to us: without this, rules
    // lacking its exemption would make every attempt open another one, for ever.
    if (sources !== undefined && sources.includes(unmapV4(this.downstream.remoteAddress ?? ''))) return this.fail(REASONS.passthroughLoop);
    const options = { host: dst.address, port: dst.port, allowHalfOpen: true, noDelay: true };
    if (sources === undefined) return this.dial(net.connect(options));
    // upstream_bind_config (the inbound passthrough's 127.0.0.6 / ::6): the source of the destination's family;
    // with none, a bind in the other family cannot work.
    const v6 = dst.address.includes(':');
    const source = sources.find((s) => s.includes(':') === v6);
    if (source === undefined) return this.fail(REASONS.connectFailure);
    this.dial(net.connect({ ...options, localAddress: source }));
  }

  private connectNext(): void {
    const cluster = this.cluster!;
    if (cluster.model.originalDst === true) return this.connectOriginalDst();
    // A TCP connection is no request: the request bulkhead never refuses it (maxConnections bounds it).
    const endpoint = cluster.startCall(undefined, false);
    if (endpoint === null || endpoint === CLUSTER_OVERFLOW) return this.fail(REASONS.noHealthyUpstream);
    this.attempts++;
    this.endpoint = endpoint;
    const options = { host: endpoint.address, port: endpoint.port, allowHalfOpen: true, noDelay: true };
    // mTLS when the cluster says so (no ALPN: the peer's inbound sniffs what is inside).
    this.dial(cluster.tls === null ? net.connect(options) : cluster.tls.connect(endpoint.address, endpoint.port, null, options));
  }

  private dial(upstream: net.Socket): void {
    this.upstream = upstream;
    const timeoutMs = this.cluster!.model.connectTimeoutMs;
    if (timeoutMs > 0) upstream.setTimeout(timeoutMs, () => upstream.destroy(new Error('connect timeout')));
    upstream.once(readyEventOf(upstream), () => this.onConnected(upstream));
    upstream.on('error', (err: NodeJS.ErrnoException) => this.onUpstreamError(upstream, err));
    upstream.on('close', () => {
      if (upstream !== this.upstream) return;
      this.upstreamClosed = true;
      if (this.connected && !this.downstreamClosed && !this.downstream.writableEnded) {
        // The upstream is gone both ways; let the client read what was sent, then close.
        this.downstream.end();
      }
      this.maybeFinish();
    });
  }

  private onConnected(upstream: net.Socket): void {
    if (this.downstreamClosed) {
      upstream.destroy();
      return;
    }
    this.connected = true;
    upstream.setTimeout(this.ctx.chain.idleTimeoutMs, () => this.destroyBoth());
    // Either way, one side's end ends the other side's writable: that is the half-close.
    this.pumpIn = forward(this.downstream, upstream);
    this.pumpOut = forward(upstream, this.downstream);
  }

  private onUpstreamError(upstream: net.Socket, err: NodeJS.ErrnoException): void {
    if (upstream !== this.upstream) return;
    if (this.connected) {
      this.reason = REASONS.upstreamReset;
      this.downstream.destroy();
      return;
    }
    if (this.endpoint === null) {
      // ORIGINAL_DST: one address, nothing to retry elsewhere.
      this.upstream = null;
      upstream.destroy();
      this.cluster!.stats.connectFailure();
      return this.fail(REASONS.connectFailure);
    }
    if (err.code === TLS_NOT_READY_ERROR || err.code === PEER_IDENTITY_ERROR) {
      // Our own secrets missing, or a peer that is not who the service may be: no endpoint's fault, and another
      // endpoint would not do better (a wrong identity is a config or security problem, not a flaky host).
      this.cluster!.endCall(this.endpoint!, false, 'ignored');
      this.endpoint = null;
      this.upstream = null;
      upstream.destroy();
      return this.fail(err.code === TLS_NOT_READY_ERROR ? REASONS.tlsNotReady : REASONS.peerIdentity);
    }
    this.cluster!.endCall(this.endpoint!, false, 'localFailure');
    this.endpoint = null;
    this.upstream = null;
    upstream.destroy();
    this.cluster!.stats.connectFailure();
    const candidates = this.cluster!.endpoints.length;
    if (this.attempts < Math.min(MAX_CONNECT_ATTEMPTS, candidates) && !this.downstreamClosed) {
      this.connectNext();
      return;
    }
    this.fail(REASONS.connectFailure);
  }

  private fail(reason: Reason): void {
    this.reason = reason;
    // TCP has no way to say why: close the client's connection, as Envoy does.
    this.downstream.destroy();
    this.upstreamClosed = true;
    this.maybeFinish();
  }

  private destroyBoth(): void {
    this.upstream?.destroy();
    this.downstream.destroy();
  }

  private maybeFinish(): void {
    if (this.finished || !this.downstreamClosed || !(this.upstreamClosed || this.upstream === null)) return;
    this.finished = true;
    // Both sockets are closed: their read buffers can serve the next sessions.
    this.pumpIn?.release();
    this.pumpOut?.release();
    if (this.endpoint !== null) this.cluster!.endCall(this.endpoint, false, this.connected ? 'success' : 'ignored');
    this.bytesReceived = this.downstream.bytesRead;
    this.bytesSent = this.downstream.bytesWritten;
    this.durationSeconds = Number(process.hrtime.bigint() - this.startNs) / 1e9;
    this.ctx.stats.tcpSessionFinished(this);
  }
}

/** src's bytes to dst: into reused buffers where src is a plaintext socket, else through pipe() (TLS). */
function forward(src: net.Socket, dst: net.Socket): SocketPump | null {
  if (canReadRaw(src)) {
    const pump = new SocketPump(src, dst);
    pump.start();
    return pump;
  }
  src.pipe(dst);
  src.resume();
  return null;
}
