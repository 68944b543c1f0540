// The proxy's ADS stream (gRPC I/O shell): one StreamAggregatedResources call at a time, responses applied to the
// proxy in order, ACK/NACK sent back, reconnect with backoff across the list of control servers. All protocol
// decisions live in subscriptions.ts; this file owns the channel, the call and the reconnect timer.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { nodeToXds, type NodeInfo } from '../../xds/compiler.js';
import { adsService } from './ads-proto.js';
import type { ResourceSet } from '../config/snapshot.js';
import type { ApplyResult } from '../proxy.js';
import { Backoff, type BackoffOptions } from './backoff.js';
import { kindLabel, XDS_TYPE_LABELS } from './type-labels.js';
import { KIND_TYPE_URLS, SubscriptionState, type ApplyOutcome, type ResourceKind, type TypeVersions, type XdsRequest, type XdsResponse } from './subscriptions.js';

/** What the client needs of the proxy: a narrow view, so this module knows no data-path internals. */
export interface XdsTarget {
  readonly logger: Logger;
  readonly registry: Registry;
  apply(resources: ResourceSet, version: string): Promise<ApplyResult>;
}

export interface AdsClientOptions {
  /** Control servers as HOST:PORT; each reconnect tries the next one. */
  readonly servers: readonly string[];
  readonly node: NodeInfo;
  readonly target: XdsTarget;
  readonly backoff?: BackoffOptions;
  /** Defaults to plaintext (the control server's 15010 port). */
  readonly credentials?: grpc.ChannelCredentials;
  /**
   * Envoy's initial_fetch_timeout: once listeners and clusters are in, how long to wait for the route tables and
   * endpoint sets they name before calling the config warm anyway (what is missing is logged and answers
   * no_route / no_healthy_upstream). Default 15 s, as Envoy; 0 waits forever.
   */
  readonly initialFetchTimeoutMs?: number;
  /** Injected so tests can drive reconnects without waiting. */
  readonly timers?: { setTimeout(fn: () => void, ms: number): unknown; clearTimeout(handle: unknown): void };
}

/** The shape @grpc/proto-loader gives a DiscoveryResponse with keepCase (snake_case fields). */
interface WireResponse {
  version_info?: string;
  type_url?: string;
  nonce?: string;
  resources?: { type_url?: string; value?: Uint8Array }[];
}

type AdsCall = grpc.ClientDuplexStream<Record<string, unknown>, WireResponse>;
type AdsStub = grpc.Client & { StreamAggregatedResources(): AdsCall };

interface Stream {
  readonly server: string;
  readonly client: AdsStub;
  readonly call: AdsCall;
  /** Whether the next request is the stream's first (it carries the Node). */
  first: boolean;
  connected: boolean;
  ended: boolean;
}

interface XdsMetrics {
  connected: Gauge;
  updates: Counter<'type' | 'result'>;
}

/** Registered once per registry: a proxy that replaces its client keeps counting in the same series. */
function xdsMetrics(registry: Registry): XdsMetrics {
  const connected =
    (registry.getSingleMetric('pillion_xds_connected') as Gauge | undefined) ??
    new Gauge({ name: 'pillion_xds_connected', help: '1 while the ADS stream to a control server is up, else 0.', registers: [registry] });
  const updates =
    (registry.getSingleMetric('pillion_xds_updates_total') as Counter<'type' | 'result'> | undefined) ??
    new Counter({
      name: 'pillion_xds_updates_total',
      help: 'xDS responses handled, by resource type (lds, rds, cds, eds, sds: the control server\'s labels too) and result (ack or nack).',
      labelNames: ['type', 'result'] as const,
      registers: [registry],
    });
  for (const type of XDS_TYPE_LABELS) for (const result of ['ack', 'nack']) updates.labels(type, result).inc(0);
  return { connected, updates };
}

export class AdsClient {
  private readonly state = new SubscriptionState();
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private readonly metrics: XdsMetrics;
  private readonly timers: NonNullable<AdsClientOptions['timers']>;
  private serverIndex = -1;
  private stream: Stream | null = null;
  private reconnectTimer: unknown = null;
  /** Stream openings and responses run one at a time, in arrival order: each sees the state the last one left. */
  private queue: Promise<void> = Promise.resolve();
  private started = false;
  private stopped = false;
  private readonly warmWaiters: (() => void)[] = [];

  constructor(private readonly options: AdsClientOptions) {
    if (options.servers.length === 0) throw new Error('AdsClient: no control servers');
    this.backoff = new Backoff(options.backoff);
    this.log = options.target.logger.child({ component: 'xds' });
    this.metrics = xdsMetrics(options.target.registry);
    this.timers = options.timers ?? {
      setTimeout: (fn, ms) => setTimeout(fn, ms),
      clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
    };
  }

  /** Opens the first stream (to the first server). */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.enqueue(() => this.open());
  }

  /** True once the first config is warm: what the proxy's /ready waits for. */
  isWarm(): boolean {
    return this.state.isWarm() || this.warmByTimeout;
  }

  /** Last ACKed version per resource type. */
  versions(): TypeVersions {
    return this.state.versions();
  }

  /** Resolves once the first config is warm (never, if the client is stopped before). */
  whenWarm(): Promise<void> {
    if (this.isWarm()) return Promise.resolve();
    return new Promise((resolve) => this.warmWaiters.push(resolve));
  }

  private warmByTimeout = false;
  private fetchTimer: unknown = null;

  /** Started when listeners and clusters are first in; gives up waiting on what they name (see the option). */
  private armInitialFetchTimeout(): void {
    const ms = this.options.initialFetchTimeoutMs ?? 15_000;
    if (ms <= 0 || this.fetchTimer !== null || this.isWarm() || !this.state.coreAccepted()) return;
    this.fetchTimer = this.timers.setTimeout(() => {
      if (this.isWarm() || this.stopped) return;
      this.warmByTimeout = true;
      this.log.warn({ missing: this.state.missing(), afterMs: ms }, 'xds: initial fetch timed out: ready without these');
      for (const resolve of this.warmWaiters.splice(0)) resolve();
    }, ms);
  }

  /** The server of the stream that is up, or null. */
  get connectedServer(): string | null {
    return this.stream?.connected === true ? this.stream.server : null;
  }

  /** Read-only view of the protocol state (config dump, tests). */
  get subscriptions(): SubscriptionState {
    return this.state;
  }

  /** Ends the stream and the reconnect timer; the proxy keeps its config. Waits for a response being applied. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconnectTimer !== null) {
      this.timers.clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    if (this.fetchTimer !== null) {
      this.timers.clearTimeout(this.fetchTimer);
      this.fetchTimer = null;
    }
    const stream = this.stream;
    if (stream !== null) this.end(stream, 'client stopped');
    await this.queue;
  }

  private enqueue(task: () => void | Promise<void>): void {
    this.queue = this.queue.then(task).catch((err: unknown) => {
      // Nothing may throw across the event loop: a bug here is logged, the stream goes on.
      this.log.error({ err }, 'xds: internal error');
    });
  }

  private open(): void {
    if (this.stopped) return;
    const { servers } = this.options;
    this.serverIndex = (this.serverIndex + 1) % servers.length;
    const server = servers[this.serverIndex]!;
    const Ctor = adsService() as unknown as new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => AdsStub;
    const client = new Ctor(server, this.options.credentials ?? grpc.credentials.createInsecure(), {
      // Envoy-sized configs exceed gRPC's 4 MiB default.
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      // A control server whose host vanished leaves the TCP connection silent, not closed: HTTP/2 pings
      // notice within ~40 s and the stream fails over, as Envoy's xDS keepalive does.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
    });
    const call = client.StreamAggregatedResources();
    const stream: Stream = { server, client, call, first: true, connected: false, ended: false };
    this.stream = stream;
    this.log.debug({ server }, 'xds: opening ADS stream');
    call.on('data', (msg: WireResponse) => {
      const receivedAt = performance.now();
      this.enqueue(() => this.onResponse(stream, msg, receivedAt));
    });
    // 'status' comes exactly once when the call ends, after any 'error'; the error listener only keeps an
    // emitted error from becoming an uncaught exception.
    call.on('error', () => {});
    call.on('status', (status: grpc.StatusObject) => this.end(stream, status.details || grpc.status[status.code] || 'stream ended', status.code));
    call.on('metadata', () => this.markConnected(stream));
    this.watchChannel(stream);
    for (const request of this.state.streamStarted()) this.send(stream, request);
  }

  /** READY on the channel means the control server accepted the connection: log it and raise the gauge. */
  private watchChannel(stream: Stream): void {
    const channel = stream.client.getChannel();
    const watch = (current: grpc.connectivityState): void => {
      if (stream.ended || current === grpc.connectivityState.SHUTDOWN) return;
      // No deadline, so no timer: closing the channel (end()) moves it to SHUTDOWN, which releases the watcher.
      channel.watchConnectivityState(current, Infinity, () => {
        if (stream.ended) return;
        const next = channel.getConnectivityState(false);
        if (next === grpc.connectivityState.READY) this.markConnected(stream);
        else watch(next);
      });
    };
    watch(channel.getConnectivityState(true));
  }

  private markConnected(stream: Stream): void {
    if (stream.connected || stream.ended) return;
    stream.connected = true;
    this.metrics.connected.set(1);
    this.log.info({ server: stream.server }, 'xds connected');
  }

  /** The stream is over (error, server end, or stop): release it, keep the config, schedule the next attempt. */
  private end(stream: Stream, reason: string, code?: number): void {
    if (stream.ended) return;
    stream.ended = true;
    if (this.stream === stream) this.stream = null;
    stream.call.cancel();
    stream.client.close();
    if (stream.connected) {
      this.metrics.connected.set(0);
      this.log.warn({ server: stream.server, reason, code }, 'xds disconnected: serving the last good config');
    } else if (!this.stopped) {
      // A TLS failure looks like any other unreachable server in gRPC's words: say which flag to check.
      const tls = this.options.credentials !== undefined && TLS_FAILURE.test(reason);
      this.log.warn({ server: stream.server, reason, code, ...(tls ? { hint: TLS_HINT } : {}) }, 'xds: cannot reach control server');
    }
    if (this.stopped) return;
    const delay = this.backoff.next();
    const next = this.options.servers[(this.serverIndex + 1) % this.options.servers.length];
    this.log.info({ delayMs: delay, server: next, attempt: this.backoff.attempts }, 'xds: reconnecting');
    this.reconnectTimer = this.timers.setTimeout(() => {
      this.reconnectTimer = null;
      this.enqueue(() => this.open());
    }, delay);
  }

  private send(stream: Stream, request: XdsRequest): void {
    if (stream.ended) return;
    const wire: Record<string, unknown> = {
      version_info: request.versionInfo,
      resource_names: [...request.resourceNames],
      type_url: request.typeUrl,
      response_nonce: request.responseNonce,
    };
    // The Node goes on the first request of each stream: the server learns who we are once per stream.
    if (stream.first) wire.node = nodeToXds(this.options.node);
    if (request.errorDetail !== undefined) wire.error_detail = request.errorDetail;
    stream.first = false;
    stream.call.write(wire);
  }

  private async onResponse(stream: Stream, msg: WireResponse, receivedAt: number): Promise<void> {
    // A response of a stream that has since died is dropped: the server sends its state again on the new stream.
    if (stream.ended || this.stopped) return;
    this.markConnected(stream);
    // A response proves the server works: the next outage starts again from the base delay.
    this.backoff.reset();
    const response: XdsResponse = {
      typeUrl: msg.type_url ?? '',
      versionInfo: msg.version_info ?? '',
      nonce: msg.nonce ?? '',
      resources: (msg.resources ?? []).map((r) => ({ typeUrl: r.type_url ?? '', value: r.value ?? new Uint8Array() })),
    };
    const pending = this.state.prepare(response);
    if ('ignore' in pending) {
      this.log.warn({ server: stream.server, type: response.typeUrl, version: response.versionInfo, reason: pending.ignore }, 'xds: response ignored');
      return;
    }
    if (pending.unrequested.length > 0) {
      this.log.debug({ type: pending.kind, names: pending.unrequested }, 'xds: left out resources nobody subscribed to');
    }
    let outcome: ApplyOutcome;
    try {
      outcome = await this.options.target.apply(pending.resources, pending.version);
    } catch (err) {
      outcome = { thrown: err instanceof Error ? err.message : String(err) };
    }
    const verdict = this.state.settle(pending, outcome);
    // Response received → applied (or rejected): what an operator checks when pushes feel slow.
    const applyMs = Math.round((performance.now() - receivedAt) * 100) / 100;
    this.metrics.updates.labels(kindLabel(verdict.kind), verdict.ack ? 'ack' : 'nack').inc();
    if (verdict.ack) {
      this.log.info({ server: stream.server, type: verdict.kind, version: verdict.version, resources: pending.list.length, applyMs }, 'xds ACK');
    } else {
      this.log.warn(
        { server: stream.server, type: verdict.kind, version: verdict.rejectedVersion, keeping: verdict.version, reason: verdict.message, applyMs },
        'xds NACK',
      );
    }
    for (const request of verdict.requests) {
      if (request.typeUrl !== KIND_TYPE_URLS[verdict.kind]) {
        this.log.info({ type: kindName(request.typeUrl), names: request.resourceNames }, 'xds: subscription changed');
      }
      this.send(stream, request);
    }
    this.armInitialFetchTimeout();
    if (this.state.isWarm() && this.warmWaiters.length > 0) {
      for (const resolve of this.warmWaiters.splice(0)) resolve();
    }
  }
}

const TLS_FAILURE = /certificate|self.signed|unable to verify|altnames|SSL|TLS/i;
const TLS_HINT =
  "the control server's TLS certificate was not accepted: --xds-ca must be the mesh root (root-cert.pem in the control server's --ca-dir) and --xds its TLS port (15012)";

function kindName(typeUrl: string): ResourceKind | string {
  return (Object.keys(KIND_TYPE_URLS) as ResourceKind[]).find((k) => KIND_TYPE_URLS[k] === typeUrl) ?? typeUrl;
}
