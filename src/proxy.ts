// The sidecar: composes config, cluster manager, listeners, stats and admin. A config change builds a new
// snapshot and swaps one reference; clusters are updated before listeners so new routes find their clusters.
import { SecretStore, type SecretModel } from './tls/secrets.js';
import { isUnavailable, TlsContexts } from './tls/contexts.js';
import { HandshakeFailureReporter } from './tls/handshake-failures.js';
import { secretSummaries } from './tls/summary.js';
import { redactTransportSockets } from './tls/redact.js';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { ConfigSnapshot, TlsContextModel } from './config/model.js';
import { EMPTY_SNAPSHOT } from './config/model.js';
import { buildSnapshot, TranslationCache, type ResourceError, type ResourceSet, type RawResource } from './config/snapshot.js';
import { decodeMessage, TYPE_URLS } from './config/protos.js';
import { originalDstAvailable, originalDstProblem } from './listener/original-dst.js';
import { ClusterManager } from './upstream/cluster-manager.js';
import { ListenerManager } from './listener/listener-manager.js';
import { ProxyMetrics } from './observability/metrics.js';
import { ACCESS_LOG_MAX_BUFFER_BYTES, AccessLog, type AccessLogTarget } from './observability/access-log.js';
import { createLogger, setLevel } from './observability/logger.js';
import { ProxyStats } from './observability/stats.js';
import { startAdminServer } from './admin/server.js';
import type { AdminSource, ClusterStatus, ConfigDumpSource, DumpedResource, ListenerStatus, MetricsRegistry, ServerIdentity, ServerState } from './admin/types.js';
import { ResourceTimes } from './admin/resource-times.js';
import { OverloadManager, OverloadState, type OverloadThresholds } from './process/overload.js';
import { setH2Logger } from './h2/log.js';
import type { WorkerFleet, WorkerStatus } from './workers/fleet.js';

export interface ProxyOptions {
  readonly adminHost?: string;
  /** 0 picks a free port; -1 runs without an admin server. */
  readonly adminPort: number;
  readonly logLevel?: string;
  readonly accessLog?: AccessLogTarget;
  /** Give tests their own logger (e.g. silent). */
  readonly logger?: Logger;
  /** Skip Node's process metrics (tests that start many proxies in one process). */
  readonly processMetrics?: boolean;
  /** How long SIGTERM/drain lets requests in flight finish. */
  readonly drainTimeoutMs?: number;
  /** Connections open at once per listener (default DEFAULT_MAX_CONNECTIONS; 0 = no limit). */
  readonly maxConnectionsPerListener?: number;
  /** Memory thresholds of the overload manager (default: 95 % of V8's heap limit, no RSS bound). */
  readonly overload?: OverloadThresholds;
  /** Node and command line for /server_info (default: an anonymous node). */
  readonly identity?: ServerIdentity;
  /**
   * `--concurrency N` > 1, in the primary: the workers run the data path; this process validates and forwards the
   * config, and answers the admin server for all of them. Nothing binds here.
   */
  readonly workers?: (host: { readonly registry: Registry; readonly secrets: SecretStore; readonly logger: Logger }) => WorkerFleet;
  /** In a worker of `--concurrency N`: listen on the sockets the primary shares with every worker. */
  readonly sharedListeners?: boolean;
}

/** Per listener; well under a pod's usual fd limit (1,048,576), far over what one app opens to its sidecar. */
export const DEFAULT_MAX_CONNECTIONS = 16_384;
export const DEFAULT_HEAP_FRACTION = 0.95;

export interface ApplyResult {
  readonly applied: boolean;
  readonly errors: ResourceError[];
}

const EMPTY_RESOURCES: ResourceSet = { listeners: [], routes: [], clusters: [], endpoints: [] };

export class Proxy implements AdminSource {
  current: ConfigSnapshot = EMPTY_SNAPSHOT;
  private resources: ResourceSet = EMPTY_RESOURCES;
  private readonly translations = new TranslationCache();
  readonly logger: Logger;
  readonly metrics: ProxyMetrics;
  readonly accessLog: AccessLog;
  readonly clusterManager: ClusterManager;
  readonly listenerManager: ListenerManager;
  private readonly stats: ProxyStats;
  readonly overload = new OverloadState();
  /** TLS secrets by SDS name (src/tls/secrets.ts): the workload certificate and the trust bundle. */
  readonly secrets = new SecretStore();
  /** TLS contexts over `secrets`, rebuilt for new connections when a secret changes. */
  readonly tlsContexts = new TlsContexts(this.secrets);
  private readonly handshakeFailures: HandshakeFailureReporter;
  /** The worker processes, in the primary of `--concurrency N` (N > 1); null when this process serves. */
  readonly fleet: WorkerFleet | null;
  private readonly overloadManager: OverloadManager;
  private admin: { port: number; close(): Promise<void> } | null = null;
  private warm = false;
  /** Extra readiness condition from the config source (the xDS client: first config warm). */
  private readinessGate: (() => boolean) | null = null;
  private draining: Promise<void> | null = null;
  private inboundDraining: Promise<void> | null = null;
  private versionSource: (() => Record<string, string>) | null = null;
  /** When each accepted resource's current bytes arrived: Envoy's last_updated in /config_dump. */
  private readonly resourceTimes = new ResourceTimes();
  readonly startedAtMs = Date.now();

  constructor(private readonly options: ProxyOptions) {
    this.logger = options.logger ?? createLogger(options.logLevel ?? 'info');
    // Our HTTP/2 codec's once-per-process warning of a bug in frame processing goes through the proxy's logger.
    setH2Logger(this.logger);
    this.metrics = new ProxyMetrics({ defaultMetrics: options.processMetrics !== false });
    this.accessLog = new AccessLog(options.accessLog ?? 'stdout', {
      onDrop: (n) => this.accessLogDropped(n),
      onError: (err) =>
        this.logger.error(
          { target: options.accessLog ?? 'stdout', err: err.message },
          'access log: writing failed; every access line from now on is dropped (counted in pillion_access_log_dropped_total)',
        ),
    });
    this.stats = new ProxyStats(this.metrics, this.accessLog, this.logger);
    this.handshakeFailures = new HandshakeFailureReporter(
      (direction, reason) => this.metrics.tlsHandshakeFailures.inc({ direction, reason }),
      this.logger,
    );
    const tls = {
      contexts: this.tlsContexts,
      failures: this.handshakeFailures,
      handshakes: (cluster: string, resumed: boolean) => this.metrics.upstreamTlsHandshakes.inc({ cluster, session: resumed ? 'resumed' : 'full' }),
    };
    this.clusterManager = new ClusterManager((name) => this.stats.clusterSink(name), Math.random, tls);
    this.listenerManager = new ListenerManager({
      config: this,
      clusters: this.clusterManager,
      stats: this.stats,
      log: this.logger,
      overload: this.overload,
      maxConnections: options.maxConnectionsPerListener ?? DEFAULT_MAX_CONNECTIONS,
      tls,
      ...(options.sharedListeners === true ? { shared: true } : {}),
    });
    // Byte counters are brought up to date with the live connections when they are read (not per chunk).
    const reportBytes = (): void => this.listenerManager.reportBytes();
    this.metrics.downstreamBytesReceived.beforeCollect = reportBytes;
    this.metrics.downstreamBytesSent.beforeCollect = reportBytes;
    this.overloadManager = new OverloadManager({
      thresholds: options.overload ?? { heapFraction: DEFAULT_HEAP_FRACTION, maxRssBytes: 0 },
      state: this.overload,
      logger: this.logger,
      onChange: (active) => this.metrics.overloadActive.set(active ? 1 : 0),
    });
    this.overloadManager.start();
    this.fleet = options.workers?.({ registry: this.metrics.registry, secrets: this.secrets, logger: this.logger }) ?? null;
  }

  private accessLogDropped(dropped: number): void {
    this.metrics.accessLogDropped.inc();
    // Once per process; the counter tells how many more. This goes to the process log, never the access log.
    if (dropped === 1) {
      this.logger.warn(
        { target: this.options.accessLog ?? 'stdout', maxBufferBytes: ACCESS_LOG_MAX_BUFFER_BYTES },
        'access log: dropping access lines, as its destination is slower than the traffic or failed (counted in pillion_access_log_dropped_total)',
      );
    }
  }

  get registry() {
    return this.metrics.registry;
  }

  get adminPort(): number {
    return this.admin?.port ?? -1;
  }

  async startAdmin(): Promise<void> {
    if (this.options.adminPort < 0) return;
    this.admin = await startAdminServer(this, {
      host: this.options.adminHost ?? '127.0.0.1',
      port: this.options.adminPort,
      logger: this.logger,
    });
    this.logger.info({ port: this.admin.port }, 'admin listening');
  }

  /**
   * Translates and applies a whole set of resources. Invalid resources are reported and left out; if any
   * is invalid the set is rejected as a whole and the last good snapshot keeps serving (xDS NACK semantics).
   */
  async apply(resources: ResourceSet, version: string): Promise<ApplyResult> {
    const { snapshot, errors, warnings, secrets } = buildSnapshot(resources, version, this.translations);
    errors.push(...transparentListenersRefused(snapshot));
    for (const w of warnings) this.logger.warn({ type: w.typeUrl, resource: w.name, warning: w.message }, 'config warning: a value was adjusted, or a setting is not enforced yet');
    if (errors.length > 0) {
      this.metrics.configUpdate('rejected');
      for (const e of errors) this.logger.warn({ type: e.typeUrl, resource: e.name, error: e.message }, 'config rejected');
      return { applied: false, errors };
    }
    // Secrets first: listeners and clusters of the new snapshot resolve theirs at their first connection.
    this.applySdsSecrets(secrets, resources.secrets !== undefined);
    // Workers get the secrets from the store (every change is forwarded) and the rest of what was accepted here.
    if (this.fleet !== null) await this.fleet.apply(withoutSecrets(resources), version);
    await this.swap(snapshot);
    this.resources = resources;
    this.resourceTimes.update(resources, Date.now());
    this.warnMissingSecrets(snapshot);
    return { applied: true, errors };
  }

  /** Names SDS put into the store, so a name SDS stops sending is removed (the CA client's own are left alone). */
  private sdsSecretNames = new Set<string>();

  private applySdsSecrets(secrets: ReadonlyMap<string, SecretModel>, fromSds: boolean): void {
    if (!fromSds) return;
    for (const [name, secret] of secrets) {
      const old = this.secrets.get(name);
      // An unchanged secret keeps its object: TLS contexts built on it stay cached.
      if (old === undefined || JSON.stringify(old) !== JSON.stringify(secret)) this.secrets.set(name, secret);
    }
    for (const name of this.sdsSecretNames) if (!secrets.has(name)) this.secrets.set(name, undefined);
    this.sdsSecretNames = new Set(secrets.keys());
  }

  private missingSecretsLogged = '';

  /** Said when it changes: a TLS listener or cluster whose secrets are not there refuses connections until they come. */
  private warnMissingSecrets(snapshot: ConfigSnapshot): void {
    const missing: string[] = [];
    const check = (what: string, context: TlsContextModel): void => {
      const r = this.tlsContexts.resolve(context);
      if (isUnavailable(r)) missing.push(`${what}: ${r.unavailable}`);
    };
    for (const l of snapshot.listeners.values()) if (l.tls !== undefined) check(`listener ${l.name}`, l.tls.context);
    for (const c of snapshot.clusters.values()) if (c.tls !== undefined) check(`cluster ${c.name}`, c.tls.context);
    const key = missing.join('\n');
    if (key === this.missingSecretsLogged) return;
    this.missingSecretsLogged = key;
    if (missing.length === 0) return;
    this.logger.warn(
      { missing: missing.slice(0, 10), more: Math.max(0, missing.length - 10) },
      'mTLS is configured but its secrets are not there yet: such listeners refuse connections and such clusters answer 503 tls_not_ready (never plaintext) until the workload certificate and trust bundle arrive (SDS, the mesh CA, or --cert/--key/--ca)',
    );
  }

  private async swap(snapshot: ConfigSnapshot): Promise<void> {
    const previous = this.current;
    const local = this.fleet === null;
    if (local) this.clusterManager.update(snapshot.clusters);
    this.current = snapshot;
    try {
      if (local) await this.listenerManager.update(snapshot.listeners);
    } finally {
      for (const name of previous.clusters.keys()) {
        if (!snapshot.clusters.has(name)) this.metrics.forgetCluster(name);
      }
      this.metrics.setConfigVersion(snapshot.version);
      this.metrics.configUpdate('applied');
    }
    this.warm = true;
    this.logger.info(
      { version: snapshot.version, listeners: snapshot.listeners.size, clusters: snapshot.clusters.size },
      'config applied',
    );
  }

  /**
   * Make /ready also wait for `gate` (the xDS client says when listeners and every RDS/EDS resource they name
   * have arrived: Envoy's initialization warming). Listeners may be applied before that; /ready stays 503.
   */
  setReadinessGate(gate: (() => boolean) | null): void {
    this.readinessGate = gate;
  }

  /** Per-type versions for /config_dump, from a source that versions each type apart (the xDS client). */
  setVersionSource(source: (() => Record<string, string>) | null): void {
    this.versionSource = source;
  }

  // --- AdminSource ---

  isReady(): boolean {
    if (!this.warm || this.draining !== null || this.inboundDraining !== null) return false;
    if (this.readinessGate !== null && !this.readinessGate()) return false;
    const workers = this.fleet;
    // The primary has no cluster manager of its own: the snapshot every worker applied has the clusters.
    const clusters = workers === null ? this.clusterManager : this.current.clusters;
    for (const listener of this.current.listeners.values()) {
      if (listener.tcp !== undefined && !clusters.has(listener.tcp.cluster)) return false;
    }
    return workers === null || workers.allLive();
  }

  state(): ServerState {
    if (this.draining !== null || this.inboundDraining !== null) return 'DRAINING';
    if (this.isReady()) return 'LIVE';
    // Envoy: PRE_INITIALIZING until cluster initialization starts. A config source that gates readiness (xDS)
    // has started fetching; a local file has not been applied yet.
    return this.warm || this.readinessGate !== null ? 'INITIALIZING' : 'PRE_INITIALIZING';
  }

  identity(): ServerIdentity {
    return this.options.identity ?? { node: { id: '', cluster: '', metadata: {} }, commandLineOptions: {} };
  }

  snapshot(): ConfigSnapshot {
    return this.current;
  }

  configDumpSource(): ConfigDumpSource {
    const v = this.current.version;
    const timed = (list: readonly RawResource[]): DumpedResource[] => list.map((r) => ({ ...r, lastUpdatedMs: this.resourceTimes.get(r) }));
    return {
      listeners: timed(this.resources.listeners),
      routes: timed(this.resources.routes),
      clusters: timed(this.resources.clusters),
      endpoints: timed(this.resources.endpoints),
      versions: this.versionSource?.() ?? { listeners: v, routes: v, clusters: v, endpoints: v },
      secrets: this.secrets.names().flatMap((name) => {
        const s = this.secrets.get(name);
        if (s === undefined) return [];
        return [{ name, kind: s.kind, certificatesPem: s.kind === 'tls_certificate' ? s.certChainPem : s.trustedCaPem }];
      }),
    };
  }

  configDump(): unknown {
    const dump = (list: readonly RawResource[]) =>
      list.map((r) => ({
        name: r.name,
        type: r.typeUrl,
        resource: redactTransportSockets(decodeMessage(r.typeUrl.slice(r.typeUrl.lastIndexOf('/') + 1), r.value)),
      }));
    const v = this.current.version;
    return {
      version: v,
      // A local config file versions everything at once; over xDS each type has its own last ACKed version.
      versions: this.versionSource?.() ?? { listeners: v, routes: v, clusters: v, endpoints: v },
      listeners: dump(this.resources.listeners),
      routes: dump(this.resources.routes),
      clusters: dump(this.resources.clusters),
      endpoints: dump(this.resources.endpoints),
      // Certificates by SDS name: subject, SPIFFE ID, validity, serial (never the key).
      secrets: secretSummaries(this.secrets),
      bound: this.listeners(),
    };
  }

  /** This process's clusters (none in the primary of --concurrency N > 1: see liveClusters). */
  clusters(): ClusterStatus[] {
    return this.clusterManager.status();
  }

  /** What /clusters serves: with workers, the first worker's (each has its own pools, health checks and ejections). */
  liveClusters(): Promise<ClusterStatus[]> {
    return this.fleet?.clusters() ?? Promise.resolve(this.clusterManager.status());
  }

  listeners(): ListenerStatus[] {
    return this.fleet?.listeners() ?? this.listenerManager.status();
  }

  get concurrency(): number {
    return this.fleet?.concurrency ?? 1;
  }

  workers(): WorkerStatus[] {
    return this.fleet?.status() ?? [];
  }

  /** With workers: this process's metrics and every worker's, aggregated; else the registry itself. */
  aggregateMetrics(): Promise<MetricsRegistry> {
    return this.fleet?.metrics() ?? Promise.resolve(this.metrics.registry);
  }

  setLogLevel(level: string): boolean {
    if (!setLevel(this.logger, level)) return false;
    this.fleet?.setLogLevel(level);
    return true;
  }

  /**
   * Stops accepting, lets requests in flight finish (up to the drain timeout). Inbound only: the outbound listeners
   * keep accepting and serving until a full drain (SIGTERM).
   */
  drain(options: { inboundOnly?: boolean } = {}): Promise<void> {
    const timeout = this.options.drainTimeoutMs ?? 20_000;
    if (options.inboundOnly === true) {
      if (this.draining !== null) return this.draining;
      if (this.inboundDraining === null) {
        this.logger.info('draining inbound listeners (outbound ones keep serving)');
        this.inboundDraining = this.drainScope(timeout, 'inbound');
      }
      return this.inboundDraining;
    }
    if (this.draining === null) {
      this.logger.info('draining');
      this.draining = this.drainScope(timeout, 'all');
    }
    return this.draining;
  }

  private async drainScope(timeoutMs: number, scope: 'inbound' | 'all'): Promise<void> {
    const workers = this.fleet;
    if (workers === null) return this.listenerManager.drain(timeoutMs, scope);
    await workers.drain(scope === 'inbound', timeoutMs);
  }

  async stop(): Promise<void> {
    await this.fleet?.stop();
    this.overloadManager.stop();
    this.listenerManager.destroy();
    this.clusterManager.destroy();
    await this.admin?.close();
    await this.accessLog.close();
  }
}

/** What the primary forwards to its workers: everything but the SDS secrets, which reach them through the store. */
function withoutSecrets(resources: ResourceSet): ResourceSet {
  const { secrets: _secrets, ...rest } = resources;
  return rest;
}

/**
 * Listeners with use_original_dst (transparent interception) where this process cannot read original
 * destinations: refused with the reason, so the config is NACKed (or `--config` fails to start) instead of
 * sending every intercepted connection to the wrong place.
 */
function transparentListenersRefused(snapshot: ConfigSnapshot): ResourceError[] {
  const errors: ResourceError[] = [];
  for (const l of snapshot.listeners.values()) {
    if (!l.useOriginalDst || originalDstAvailable()) continue;
    errors.push({
      typeUrl: TYPE_URLS.Listener,
      name: l.name,
      message: `use_original_dst: transparent interception needs the original destination of each connection (SO_ORIGINAL_DST), which this proxy cannot read: ${originalDstProblem()}. Explicit ports (Host header, HTTP_PROXY, egress ports) work without it`,
    });
  }
  return errors;
}

