// `pillion proxy`: run one sidecar from flags until SIGTERM/SIGINT, then drain and exit.
// Each mode loads only what it uses: the gRPC client (~20 MiB of RSS with its modules) only with --xds, the
// mesh compiler and YAML parsers only with --config.
import { WORKLOAD_CERT_SECRET } from '../tls/secrets.js';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { parseProxyArgs, UsageError, type ProxyBootstrap } from '../bootstrap/args.js';
import { DEFAULT_HEAP_FRACTION, Proxy, type ProxyOptions } from '../proxy.js';
import { startIdleMemoryRelease } from '../process/idle-memory.js';
import { cgroupMemoryLimitBytes } from '../process/overload.js';
import { loadIdentityFiles } from '../tls/static-identity.js';
import { originalDstAvailable, originalDstProblem } from '../listener/original-dst.js';
import { APP_PROBES_ENV, parseAppProbes, type AppProbe } from '../admin/app-probes.js';
import type { ListeningServer } from '../admin/listen.js';

export async function runProxyCommand(argv: string[]): Promise<void> {
  const boot = parseProxyArgs(argv);
  // --concurrency N > 1: node:cluster re-runs this command in each worker (with the same flags); only then is the
  // cluster module loaded at all.
  if (boot.concurrency > 1 && (await import('node:cluster')).default.isWorker) return runWorker(boot);
  // Before anything binds: intercepted traffic with no way to tell where it was going would all be misrouted.
  if (boot.node.interception === 'REDIRECT' && !originalDstAvailable()) {
    throw new Error(`--interception redirect: cannot read original destinations (SO_ORIGINAL_DST): ${originalDstProblem()}. Without interception (explicit ports, Host header, HTTP_PROXY) the proxy runs without it`);
  }
  // Before anything binds: a bad probe list must fail the start, naming the probe, not fail every probe later.
  const status: StatusPlan | null = boot.statusPort === undefined ? null : { port: boot.statusPort, probes: parseAppProbes(process.env[APP_PROBES_ENV]) };
  const workers = boot.concurrency > 1 ? await fleetFactory(boot) : {};
  const running = boot.xds !== undefined ? await runFromXds(boot, boot.xds, workers, status) : await runFromFile(boot, workers, status);
  if (boot.idleMemoryRelease) startIdleMemoryRelease(running.proxy.logger);

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    running.proxy.logger.info({ signal }, 'shutting down: draining requests in flight');
    // The ADS stream goes first: no config change may land while listeners drain.
    running
      .beforeDrain()
      .then(() => running.proxy.drain())
      .then(() => running.proxy.stop())
      .then(() => running.status?.close())
      .then(
        () => process.exit(0),
        (err: unknown) => {
          running.proxy.logger.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/** The primary's worker processes (started once its Proxy exists, before any config is applied). */
async function fleetFactory(boot: ProxyBootstrap): Promise<Pick<ProxyOptions, 'workers'>> {
  const { WorkerFleet } = await import('../workers/fleet.js');
  return {
    workers: (host) => {
      const fleet = new WorkerFleet({ ...host, concurrency: boot.concurrency });
      host.logger.warn(
        { concurrency: boot.concurrency },
        'concurrency > 1: circuit breakers (max connections, pending requests, requests, retries), retry budgets, outlier detection, local rate limits and active health checks apply per worker process, not across workers as in Envoy; so do --max-connections and --overload-rss-mb (default 90 % of the cgroup limit, watched by each process against its own RSS: set it to about the pod limit / (N + 1)); size limits for one worker',
      );
      if (boot.node.inboundPort === 0 || boot.node.outboundPort === 0) {
        host.logger.warn('concurrency > 1 with port 0: each listener\'s free port is picked once and shared by the workers in listen order; give fixed ports (--inbound-port, --outbound-port) so a config change or a restarted worker cannot land elsewhere');
      }
      fleet.start();
      return fleet;
    },
  };
}

/** A worker of --concurrency N: a data-path-only Proxy fed by the primary (src/workers/worker.ts). */
async function runWorker(boot: ProxyBootstrap): Promise<void> {
  const { serveAsWorker } = await import('../workers/worker.js');
  const { WORKER_INDEX_ENV } = await import('../workers/fleet.js');
  const { createLogger } = await import('../observability/logger.js');
  const index = Number(process.env[WORKER_INDEX_ENV] ?? '0');
  const logger = createLogger(boot.logLevel).child({ worker: index });
  const proxy = new Proxy({ adminPort: -1, logger, accessLog: boot.accessLog, sharedListeners: true, ...limitOptions(boot) });
  if (boot.idleMemoryRelease) startIdleMemoryRelease(proxy.logger);
  serveAsWorker(proxy, index);
}

/** What the sidecar's limits flags say, as Proxy options. */
function limitOptions(boot: ProxyBootstrap): Pick<ProxyOptions, 'maxConnectionsPerListener' | 'overload'> {
  // Without a flag: 90 % of the pod's memory limit, so the proxy sheds load before the OOM killer ends it.
  const maxRssBytes = boot.overloadRssMb !== undefined ? boot.overloadRssMb * 1048576 : Math.floor(cgroupMemoryLimitBytes() * 0.9);
  return {
    ...(boot.maxConnections === undefined ? {} : { maxConnectionsPerListener: boot.maxConnections }),
    overload: { heapFraction: DEFAULT_HEAP_FRACTION, maxRssBytes },
  };
}

/** Node and flags for /server_info, under Envoy's Node and CommandLineOptions names (Node.cluster is the service). */
function identityOption(boot: ProxyBootstrap): Pick<ProxyOptions, 'identity'> {
  const n = boot.node;
  return {
    identity: {
      node: {
        id: n.id,
        cluster: n.service,
        metadata: { service: n.service, namespace: n.namespace, service_account: n.serviceAccount, inbound_port: n.inboundPort, outbound_port: n.outboundPort },
      },
      commandLineOptions: {
        service_node: n.id,
        service_cluster: n.service,
        log_level: boot.logLevel,
        ...(boot.configFile === undefined ? {} : { config_path: boot.configFile }),
      },
    },
  };
}

/** --cert/--key/--ca: the workload identity into the SecretStore before any config needs it. */
function loadIdentity(proxy: Proxy, boot: ProxyBootstrap): void {
  if (boot.identityFiles === undefined) return;
  const { spiffeId, notAfter } = loadIdentityFiles(proxy.secrets, boot.identityFiles);
  proxy.logger.info({ spiffeId, notAfter, cert: boot.identityFiles.cert }, 'workload identity loaded from files: mTLS per the mesh policy');
  if (spiffeId === null) proxy.logger.warn({ cert: boot.identityFiles.cert }, 'the --cert certificate has no SPIFFE ID (URI SAN): peers with STRICT mTLS refuse it');
}

/** Once at start: without the native helper, listeners with use_original_dst are refused (see proxy.ts). */
function warnIfNoOriginalDst(proxy: Proxy): void {
  if (originalDstAvailable()) return;
  proxy.logger.warn(
    { problem: originalDstProblem() },
    'transparent interception unavailable: cannot read original destinations (SO_ORIGINAL_DST); listeners with use_original_dst will be refused, explicit ports keep working',
  );
}

interface Running {
  readonly proxy: Proxy;
  /** --status-port: it answers until the proxy has stopped (503 on /healthz/ready while draining). */
  readonly status: ListeningServer | null;
  beforeDrain(): Promise<void>;
}

/** --status-port and the probes PILLION_APP_PROBES gave, read before anything binds. */
interface StatusPlan {
  readonly port: number;
  readonly probes: ReadonlyMap<string, AppProbe>;
}

/**
 * --status-port: the kubelet's probes, next to the admin server (only the primary of --concurrency N serves it).
 * Loaded only when asked for.
 */
async function startStatus(proxy: Proxy, plan: StatusPlan | null): Promise<ListeningServer | null> {
  if (plan === null) return null;
  const { startStatusServer } = await import('../admin/status-server.js');
  try {
    return await startStatusServer(proxy, { host: '::', port: plan.port, probes: plan.probes, registry: proxy.registry, logger: proxy.logger });
  } catch (err) {
    await proxy.stop();
    throw new Error(`--status-port ${plan.port}: ${(err as Error).message}`);
  }
}

/** `--config mesh.yaml`: compile the mesh config in process, no control server. */
async function runFromFile(boot: ProxyBootstrap, workers: Pick<ProxyOptions, 'workers'>, statusPlan: StatusPlan | null): Promise<Running> {
  const { loadLocalSnapshot } = await import('../config/local.js');
  // Validate the mesh config before binding anything: a bad file must fail fast, naming the field.
  const local = loadLocalSnapshot(boot.configFile!, boot.node);
  const proxy = new Proxy({ adminPort: boot.adminPort, logLevel: boot.logLevel, accessLog: boot.accessLog, ...limitOptions(boot), ...identityOption(boot), ...workers });
  loadIdentity(proxy, boot);
  warnIfNoOriginalDst(proxy);
  for (const warning of local.resources.warnings) proxy.logger.warn({ node: boot.node.id }, warning);
  for (const warning of local.notEnforced) proxy.logger.warn({ config: boot.configFile }, `not enforced: ${warning}`);
  await proxy.startAdmin();
  const status = await startStatus(proxy, statusPlan);
  const result = await proxy.apply(local.resources, local.snapshot.version);
  if (!result.applied) {
    const lines = result.errors.map((e) => `${e.typeUrl} ${e.name}: ${e.message}`).join('\n');
    throw new Error(`the compiled config was rejected:\n${lines}`);
  }
  // With workers: once each has applied the config and listens (what /ready waits for too); a worker that cannot
  // (a port in use) fails the start as one process would.
  if (proxy.fleet !== null) {
    try {
      await proxy.fleet.whenLive();
    } catch (err) {
      await proxy.fleet.stop();
      throw err;
    }
  }
  proxy.logger.info({ node: boot.node.id, service: boot.node.service, config: boot.configFile, concurrency: boot.concurrency }, 'proxy ready');
  return { proxy, status, beforeDrain: () => Promise.resolve() };
}

/**
 * `--xds HOST:PORT[,...]`: admin first (so /ready answers 503 while warming), then the ADS stream. The proxy
 * keeps serving whatever it last accepted while no control server answers; it never gives up reconnecting.
 */
async function runFromXds(boot: ProxyBootstrap, servers: string[], workers: Pick<ProxyOptions, 'workers'>, statusPlan: StatusPlan | null): Promise<Running> {
  const { AdsClient } = await import('../xds/ads-client.js');
  // Read before anything binds: a missing or wrong --xds-ca file fails the start, naming it.
  const rootPem = boot.xdsCaFile === undefined ? undefined : readRootFile(boot.xdsCaFile);
  const proxy = new Proxy({ adminPort: boot.adminPort, logLevel: boot.logLevel, accessLog: boot.accessLog, ...limitOptions(boot), ...identityOption(boot), ...workers });
  loadIdentity(proxy, boot);
  warnIfNoOriginalDst(proxy);
  const credentials = rootPem === undefined ? undefined : await xdsTlsCredentials(rootPem);
  const ads = new AdsClient({ servers, node: boot.node, target: proxy, ...(credentials ? { credentials } : {}) });
  const certs = rootPem === undefined ? null : await startCertificateClient(boot, servers, rootPem, proxy);
  // Ready once the config is warm and, with the mesh CA, the first workload certificate is in: until then STRICT
  // peers would refuse every connection (tls_not_ready).
  proxy.setReadinessGate(() => ads.isWarm() && (certs === null || proxy.secrets.get(WORKLOAD_CERT_SECRET) !== undefined));
  proxy.setVersionSource(() => ads.versions());
  await proxy.startAdmin();
  const status = await startStatus(proxy, statusPlan);
  ads.start();
  // eslint-disable-next-line @typescript-eslint/no-floating-promises -- both only resolve; logging cannot throw
  void Promise.all([ads.whenWarm(), certs === null ? null : firstCertificate(proxy)]).then(async () => {
    // A worker's failure is logged where it happens (and NACKed once workers run); not ready until they all serve.
    await proxy.fleet?.whenLive({ throughFailures: true });
    proxy.logger.info({ node: boot.node.id, service: boot.node.service, xds: servers }, 'proxy ready');
  });
  return {
    proxy,
    status,
    beforeDrain: () => {
      certs?.stop();
      return ads.stop();
    },
  };
}

/** --xds-ca: a PEM file of one or more CA certificates, bounded (a root is ~1 KiB). */
function readRootFile(file: string): string {
  const size = statSync(file).size;
  if (size > 256 * 1024) throw new UsageError(`--xds-ca ${file}: ${size} bytes; expected a PEM root certificate`);
  const pem = readFileSync(file, 'utf8');
  try {
    new X509Certificate(pem);
  } catch (err) {
    throw new UsageError(`--xds-ca ${file}: not a PEM certificate (${(err as Error).message})`);
  }
  return pem;
}

async function xdsTlsCredentials(rootPem: string): Promise<import('@grpc/grpc-js').ChannelCredentials> {
  const grpc = await import('@grpc/grpc-js');
  return grpc.credentials.createSsl(Buffer.from(rootPem));
}

/** With --token, the proxy obtains its workload certificate from the CA on the same TLS port (src/tls/cert-client.ts). */
/** Resolves once the workload certificate is in the secret store (what /ready waits for too). */
function firstCertificate(proxy: Proxy): Promise<void> {
  if (proxy.secrets.get(WORKLOAD_CERT_SECRET) !== undefined) return Promise.resolve();
  return new Promise((resolve) => {
    const off = proxy.secrets.onChange((name, secret) => {
      if (name !== WORKLOAD_CERT_SECRET || secret === undefined) return;
      off();
      resolve();
    });
  });
}

async function startCertificateClient(boot: ProxyBootstrap, servers: string[], rootPem: string, proxy: Proxy): Promise<{ stop(): void } | null> {
  if (boot.tokenFile === undefined) {
    proxy.logger.warn('xDS over TLS without --token: this proxy gets no workload certificate (mint a token with `pillion token`)');
    return null;
  }
  const { CertificateClient } = await import('../tls/cert-client.js');
  const client = new CertificateClient({
    servers,
    rootPem,
    tokenFile: boot.tokenFile,
    identity: { namespace: boot.node.namespace, serviceAccount: boot.node.serviceAccount },
    secrets: proxy.secrets,
    registry: proxy.registry,
    logger: proxy.logger,
  });
  client.start();
  return client;
}
