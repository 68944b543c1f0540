// `pillion proxy`: run one sidecar from flags until SIGTERM/SIGINT, then drain and exit.
import { parseProxyArgs } from '../bootstrap/args.js';
import { loadLocalSnapshot } from '../config/local.js';
import { Proxy } from '../proxy.js';

export async function runProxyCommand(argv: string[]): Promise<void> {
  const boot = parseProxyArgs(argv);
  // Validate the mesh config before binding anything: a bad file must fail fast, naming the field.
  const local = loadLocalSnapshot(boot.configFile!, boot.node);
  const proxy = new Proxy({ adminPort: boot.adminPort, logLevel: boot.logLevel, accessLog: boot.accessLog });
  for (const warning of local.resources.warnings) proxy.logger.warn({ node: boot.node.id }, warning);
  await proxy.startAdmin();
  const result = await proxy.apply(local.resources, local.snapshot.version);
  if (!result.applied) {
    const lines = result.errors.map((e) => `${e.typeUrl} ${e.name}: ${e.message}`).join('\n');
    throw new Error(`the compiled config was rejected:\n${lines}`);
  }
  proxy.logger.info({ node: boot.node.id, service: boot.node.service, config: boot.configFile }, 'proxy ready');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    proxy.logger.info({ signal }, 'shutting down: draining requests in flight');
    void proxy
      .drain()
      .then(() => proxy.stop())
      .then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
