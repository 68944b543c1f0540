// Where the data path reports: turns finished requests, TCP sessions and connections into metric updates
// (through the pre-bound children of ProxyMetrics) and access-log lines.
import type { Direction } from '../config/model.js';
import type { Reason } from '../reasons.js';
import type { FinishedRequest } from '../http/context.js';
import type { TcpSession } from '../tcp/tcp-proxy.js';
import type { ListenerStats, RejectReason } from '../listener/listener-manager.js';
import type { ClusterStatsSink, RetrySkip } from '../upstream/cluster-manager.js';
import type { EjectionReason } from '../upstream/outlier.js';
import type { ClusterStats, ProxyMetrics } from './metrics.js';
import type { AccessLog, AccessLogEntry } from './access-log.js';
import { isoTime } from './access-line.js';
import type { Logger } from 'pino';
import { AuthzStats } from './authz-stats.js';

class ClusterStatsAdapter implements ClusterStatsSink {
  constructor(private readonly s: ClusterStats) {}
  onConnectionOpen(): void {
    this.s.connectionsActive.inc();
  }
  onConnectionClose(): void {
    this.s.connectionsActive.dec();
  }
  onResetDeferred(): void {
    this.s.resetBudgetExhausted.inc();
  }
  onPendingOverflow(): void {
    this.s.pendingOverflow.inc();
  }
  requestOverflow(): void {
    this.s.requestOverflow.inc();
  }
  endpointEjected(reason: EjectionReason): void {
    this.s.ejected(reason);
  }
  endpointsEjected(count: number): void {
    this.s.endpointsEjected.set(count);
  }
  healthCheck(success: boolean): void {
    (success ? this.s.healthChecksSuccess : this.s.healthChecksFailure).inc();
  }
  endpointsUnhealthy(count: number): void {
    this.s.endpointsUnhealthy.set(count);
  }
  connectFailure(): void {
    this.s.connectFailures.inc();
  }
  retried(): void {
    this.s.retries.inc();
  }
  retrySkipped(why: RetrySkip): void {
    this.s.retrySkipped(why);
  }
  requestStarted(): void {
    this.s.requestsActive.inc();
  }
  requestFinished(endpointKey: string, status: number, seconds: number): void {
    this.s.requestsActive.dec();
    this.s.requestTime.observe(seconds);
    this.s.upstreamRequest(endpointKey, status);
  }
  tcpConnection(): void {
    this.s.tcpConnections.inc();
  }
}

export class ProxyStats implements ListenerStats {
  /** RBAC and JWT counters and rate-limited warnings (src/authz). */
  readonly authz: AuthzStats;

  constructor(
    readonly metrics: ProxyMetrics,
    private readonly accessLog: AccessLog,
    logger: Logger | null = null,
  ) {
    this.authz = new AuthzStats(metrics, logger);
  }

  clusterSink(cluster: string): ClusterStatsSink {
    return new ClusterStatsAdapter(this.metrics.clusterStats(cluster));
  }

  connectionOpened(listener: string): void {
    const s = this.metrics.listenerStats(listener);
    s.connections.inc();
    s.connectionsActive.inc();
  }

  connectionClosed(listener: string, bytesReceived: number, bytesSent: number): void {
    this.metrics.listenerStats(listener).connectionsActive.dec();
    this.connectionBytes(listener, bytesReceived, bytesSent);
  }

  connectionBytes(listener: string, bytesReceived: number, bytesSent: number): void {
    const s = this.metrics.listenerStats(listener);
    s.bytesReceived.inc(bytesReceived);
    s.bytesSent.inc(bytesSent);
  }

  connectionRejected(listener: string, reason: RejectReason): void {
    this.metrics.downstreamConnectionsRejected.inc({ listener, reason });
  }

  acceptPaused(listener: string): void {
    this.metrics.listenerAcceptPauses.inc({ listener });
  }

  /** Bound children per listener and transport: counted per inbound connection, so no label hashing each time. */
  private readonly transportCounters = new Map<string, { inc(): void }>();

  connectionTransport(listener: string, transport: 'tls' | 'plaintext'): void {
    const key = `${transport} ${listener}`;
    let counter = this.transportCounters.get(key);
    if (counter === undefined) {
      counter = this.metrics.downstreamConnectionsByTransport.labels({ listener, transport });
      this.transportCounters.set(key, counter);
    }
    counter.inc();
  }

  http2ProtocolClose(listener: string): void {
    this.metrics.downstreamHttp2ProtocolCloses.inc({ listener });
  }

  requestStarted(direction: Direction): void {
    this.metrics.downstreamActive(direction).inc();
  }

  localReply(reason: Reason): void {
    this.metrics.localReply(reason);
  }

  requestFinished(ex: FinishedRequest, seconds: number): void {
    const direction = ex.direction as Direction;
    const m = this.metrics;
    m.downstreamActive(direction).dec();
    m.downstreamRequests(direction, ex.status);
    m.observeDownstreamDuration(direction, seconds);
    if (ex.peer !== null) m.peerRequest(ex.peer.spiffeId, 'http');
    if (!this.accessLog.enabled) return;
    const reason = ex.reason;
    const span = ex.span;
    const entry: AccessLogEntry = {
      // The wall clock now, less the monotonic duration: the start, read only when a line is written.
      start_time: isoTime(Math.round(Date.now() - seconds * 1e3)),
      duration_ms: Math.round(seconds * 1e6) / 1e3,
      protocol: ex.protocol as 'HTTP/1.1' | 'HTTP/2',
      method: ex.method,
      authority: ex.authority,
      path: ex.path,
      status: ex.status,
      bytes_received: ex.bytesReceived,
      bytes_sent: ex.bytesSent,
      upstream_cluster: ex.upstreamCluster,
      upstream_host: ex.upstreamHost,
      attempts: ex.attempts,
      response_flags: reason === null ? '-' : reason.flag,
      request_id: ex.requestId,
      trace_id: span === null ? '-' : span.traceId,
      span_id: span === null ? '-' : span.spanId,
      parent_span_id: span === null || span.parentId === '' ? '-' : span.parentId,
      downstream_remote: ex.remoteAddress,
      downstream_peer_principal: ex.peer === null ? undefined : ex.peer.spiffeId,
      x_pillion_reason: reason === null ? undefined : reason.id,
    };
    this.accessLog.log(entry);
  }

  tcpSessionFinished(session: TcpSession): void {
    const cluster = session.cluster;
    if (cluster !== null) this.metrics.clusterStats(cluster.model.name).tcpConnections.inc();
    if (session.reason !== null) this.metrics.localReply(session.reason);
    if (session.peer !== null) this.metrics.peerRequest(session.peer.spiffeId, 'tcp');
    if (!this.accessLog.enabled) return;
    const reason = session.reason;
    this.accessLog.log({
      start_time: isoTime(session.startMs),
      duration_ms: Math.round(session.durationSeconds * 1e6) / 1e3,
      protocol: 'TCP',
      method: '-',
      authority: '-',
      path: '-',
      status: 0,
      bytes_received: session.bytesReceived,
      bytes_sent: session.bytesSent,
      upstream_cluster: cluster?.model.name ?? '-',
      upstream_host: session.endpoint?.key ?? session.passthroughHost ?? '-',
      attempts: session.attempts,
      response_flags: reason === null ? '-' : reason.flag,
      request_id: '-',
      downstream_remote: session.downstream.remoteAddress ?? '-',
      downstream_peer_principal: session.peer === null ? undefined : session.peer.spiffeId,
      x_pillion_reason: reason === null ? undefined : reason.id,
    });
  }
}
