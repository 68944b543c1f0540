// `pillion proxy`: run one sidecar from flags until SIGTERM/SIGINT, then drain and exit.
// Each mode loads only what it uses: the gRPC client (~20 MiB of RSS with its modules) only with --xds, the
// mesh compiler and YAML parsers only with --config.
import { parseProxyArgs, type ProxyBootstrap } from '../bootstrap/args.js';
import { DEFAULT_HEAP_FRACTION, Proxy, type ProxyOptions } from '../proxy.js';
import { startIdleMemoryRelease } from '../process/idle-memory.js';
import { cgroupMemoryLimitBytes } from '../process/overload.js';
import { loadIdentityFiles } from '../tls/static-identity.js';

export async function runProxyCommand(argv: string[]): Promise<void> {
  const boot = parseProxyArgs(argv);
  const running = boot.xds !== undefined ? await runFromXds(boot, boot.xds) : await runFromFile(boot);
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

/** What the sidecar's limits flags say, as Proxy options. */
function limitOptions(boot: ProxyBootstrap): Pick<ProxyOptions, 'maxConnectionsPerListener' | 'overload'> {
  // Without a flag: 90 % of the pod's memory limit, so the proxy sheds load before the OOM killer ends it.
  const maxRssBytes = boot.overloadRssMb !== undefined ? boot.overloadRssMb * 1048576 : Math.floor(cgroupMemoryLimitBytes() * 0.9);
  return {
    ...(boot.maxConnections === undefined ? {} : { maxConnectionsPerListener: boot.maxConnections }),
    overload: { heapFraction: DEFAULT_HEAP_FRACTION, maxRssBytes },
  };
}

/** --cert/--key/--ca: the workload identity into the SecretStore before any config needs it. */
function loadIdentity(proxy: Proxy, boot: ProxyBootstrap): void {
  if (boot.identityFiles === undefined) return;
  const { spiffeId, notAfter } = loadIdentityFiles(proxy.secrets, boot.identityFiles);
  proxy.logger.info({ spiffeId, notAfter, cert: boot.identityFiles.cert }, 'workload identity loaded from files: mTLS per the mesh policy');
  if (spiffeId === null) proxy.logger.warn({ cert: boot.identityFiles.cert }, 'the --cert certificate has no SPIFFE ID (URI SAN): peers with STRICT mTLS refuse it');
}

interface Running {
  readonly proxy: Proxy;
  beforeDrain(): Promise<void>;
}

/** `--config mesh.yaml`: compile the mesh config in process, no control server. */
async function runFromFile(boot: ProxyBootstrap): Promise<Running> {
  const { loadLocalSnapshot } = await import('../config/local.js');
  // Validate the mesh config before binding anything: a bad file must fail fast, naming the field.
  const local = loadLocalSnapshot(boot.configFile!, boot.node);
  const proxy = new Proxy({ adminPort: boot.adminPort, logLevel: boot.logLevel, accessLog: boot.accessLog, ...limitOptions(boot) });
  loadIdentity(proxy, boot);
  for (const warning of local.resources.warnings) proxy.logger.warn({ node: boot.node.id }, warning);
  for (const warning of local.notEnforced) proxy.logger.warn({ config: boot.configFile }, `not enforced: ${warning}`);
  await proxy.startAdmin();
  const result = await proxy.apply(local.resources, local.snapshot.version);
  if (!result.applied) {
    const lines = result.errors.map((e) => `${e.typeUrl} ${e.name}: ${e.message}`).join('\n');
    throw new Error(`the compiled config was rejected:\n${lines}`);
  }
  proxy.logger.info({ node: boot.node.id, service: boot.node.service, config: boot.configFile }, 'proxy ready');
  return { proxy, beforeDrain: () => Promise.resolve() };
}

/**
 * `--xds HOST:PORT[,...]`: admin first (so /ready answers 503 while warming), then the ADS stream. The proxy
 * keeps serving whatever it last accepted while no control server answers; it never gives up reconnecting.
 */
async function runFromXds(boot: ProxyBootstrap, servers: string[]): Promise<Running> {
  const { AdsClient } = await import('../xds/ads-client.js');
  const proxy = new Proxy({ adminPort: boot.adminPort, logLevel: boot.logLevel, accessLog: boot.accessLog, ...limitOptions(boot) });
  loadIdentity(proxy, boot);
  const ads = new AdsClient({ servers, node: boot.node, target: proxy });
  proxy.setReadinessGate(() => ads.isWarm());
  proxy.setVersionSource(() => ads.versions());
  await proxy.startAdmin();
  ads.start();
  // eslint-disable-next-line @typescript-eslint/no-floating-promises -- whenWarm only resolves; logging cannot throw
  void ads.whenWarm().then(() => {
    proxy.logger.info({ node: boot.node.id, service: boot.node.service, xds: servers }, 'proxy ready');
  });
  return { proxy, beforeDrain: () => ads.stop() };
}
