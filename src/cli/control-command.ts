// `pillion control`: run the xDS control server for a mesh config file until SIGTERM/SIGINT.
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { startControlServer } from '../../xds/server.js';
import { parseDuration } from '../../xds/mesh-config.js';
import { onOff, UsageError } from '../bootstrap/args.js';
import { startIdleMemoryRelease } from '../process/idle-memory.js';
import { createLogger } from '../observability/logger.js';

export const CONTROL_USAGE = `usage: pillion control --config mesh.yaml [--port 15010] [--admin-port 15014] [--host 127.0.0.1]
                       [--ca-dir DIR [--secure-port 15012] [--cert-ttl 24h] [--server-name NAME,..]]
                       [--log-level info] [--idle-memory-release on|off]
  --port 0 / --admin-port 0 pick a free port; the chosen ports are logged ("xds listening", "control admin listening").
  --ca-dir makes this server the mesh CA (root created there on first start) and serves xDS over TLS and the
  certificate service on --secure-port; --cert-ttl is the workload certificates' lifetime (1s to 2160h, i.e. 90 days).
  --server-name adds DNS names or IPs proxies dial the TLS port by to its certificate (in Kubernetes, the Service's
  names: pillion-control.pillion-system.svc); localhost, 127.0.0.1, ::1, the hostname and --host are always in it.`;

/** Workload certificates live 24 h by default (Istio's default); a compromised key is useful that long at most. */
export const DEFAULT_CERT_TTL_MS = 24 * 3600_000;
const MIN_CERT_TTL_MS = 1_000;
const MAX_CERT_TTL_MS = 90 * 24 * 3600_000;

export interface ControlArgs {
  readonly configFile: string;
  readonly host: string;
  readonly port: number;
  readonly adminPort: number;
  readonly logLevel: string;
  /** Return unused memory to the kernel when pushes stop (src/process/idle-memory.ts). */
  readonly idleMemoryRelease: boolean;
  /** The mesh CA and the TLS port, with --ca-dir. */
  readonly ca?: { readonly dir: string; readonly securePort: number; readonly certTtlMs: number; readonly serverNames: readonly string[] };
}

function port(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) {
    throw new UsageError(`--${flag}: expected a port number 0-65535, got "${value}"`);
  }
  return n;
}

export function parseControlArgs(argv: string[]): ControlArgs | 'help' {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string' },
        port: { type: 'string' },
        'admin-port': { type: 'string' },
        host: { type: 'string' },
        'log-level': { type: 'string' },
        'idle-memory-release': { type: 'string' },
        'secure-port': { type: 'string' },
        'ca-dir': { type: 'string' },
        'cert-ttl': { type: 'string' },
        'server-name': { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${CONTROL_USAGE}`);
  }
  if (values.help) return 'help';
  const caDir = values['ca-dir'];
  if (caDir === undefined && (values['secure-port'] !== undefined || values['cert-ttl'] !== undefined || values['server-name'] !== undefined)) {
    throw new UsageError('--secure-port, --cert-ttl and --server-name need --ca-dir: the TLS port serves certificates from that CA');
  }
  if (caDir === '') throw new UsageError('--ca-dir: expected a directory');
  if (values.config === undefined || values.config === '') throw new UsageError(`--config is required\n${CONTROL_USAGE}`);
  return {
    configFile: values.config,
    host: values.host ?? '127.0.0.1',
    port: port('port', values.port, 15010),
    adminPort: port('admin-port', values['admin-port'], 15014),
    logLevel: values['log-level'] ?? 'info',
    idleMemoryRelease: onOff('idle-memory-release', values['idle-memory-release'], true),
    ...(caDir === undefined
      ? {}
      : { ca: { dir: caDir, securePort: port('secure-port', values['secure-port'], 15012), certTtlMs: certTtl(values['cert-ttl']), serverNames: serverNames(values['server-name'] ?? []) } }),
  };
}

/** DNS names (RFC 1123 labels) or IP addresses, comma-separated or the flag repeated. */
function serverNames(values: readonly string[]): string[] {
  const names = values.flatMap((v) => v.split(',')).map((s) => s.trim()).filter((s) => s !== '');
  for (const name of names) {
    if (isIP(name) === 0 && !/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(name)) {
      throw new UsageError(`--server-name: expected DNS names or IP addresses, got "${name}"`);
    }
  }
  return names;
}

function certTtl(value: string | undefined): number {
  if (value === undefined) return DEFAULT_CERT_TTL_MS;
  const ms = parseDuration(value);
  if (ms === undefined || ms < MIN_CERT_TTL_MS || ms > MAX_CERT_TTL_MS) {
    throw new UsageError(`--cert-ttl: expected a duration from 1s to 2160h (90 days) such as "24h" or "30m", got "${value}"`);
  }
  return ms;
}

export async function runControlCommand(argv: string[]): Promise<void> {
  const args = parseControlArgs(argv);
  if (args === 'help') {
    process.stdout.write(`${CONTROL_USAGE}\n`);
    return;
  }
  const logger = createLogger(args.logLevel);
  // A bad config at startup rejects with its MeshConfigError: main prints it and exits non-zero.
  const server = await startControlServer({
    configFile: args.configFile,
    host: args.host,
    port: args.port,
    adminPort: args.adminPort,
    logger,
    ...(args.ca === undefined ? {} : { ca: args.ca }),
  });
  if (args.idleMemoryRelease) startIdleMemoryRelease(logger);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
