// `pillion control`: run the xDS control server for a mesh config file until SIGTERM/SIGINT.
import { parseArgs } from 'node:util';
import { startControlServer } from '../../xds/server.js';
import { onOff, UsageError } from '../bootstrap/args.js';
import { startIdleMemoryRelease } from '../process/idle-memory.js';
import { createLogger } from '../observability/logger.js';

export const CONTROL_USAGE = `usage: pillion control --config mesh.yaml [--port 15010] [--admin-port 15014] [--host 127.0.0.1]
                       [--log-level info] [--idle-memory-release on|off]
  --port 0 / --admin-port 0 pick a free port; the chosen ports are logged ("xds listening", "control admin listening").`;

export interface ControlArgs {
  readonly configFile: string;
  readonly host: string;
  readonly port: number;
  readonly adminPort: number;
  readonly logLevel: string;
  /** Return unused memory to the kernel when pushes stop (src/process/idle-memory.ts). */
  readonly idleMemoryRelease: boolean;
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
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${CONTROL_USAGE}`);
  }
  if (values.help) return 'help';
  if (values['secure-port'] !== undefined || values['ca-dir'] !== undefined) {
    throw new UsageError('--secure-port/--ca-dir (xDS over TLS, the mesh CA) are not available yet in this build');
  }
  if (values.config === undefined || values.config === '') throw new UsageError(`--config is required\n${CONTROL_USAGE}`);
  return {
    configFile: values.config,
    host: values.host ?? '127.0.0.1',
    port: port('port', values.port, 15010),
    adminPort: port('admin-port', values['admin-port'], 15014),
    logLevel: values['log-level'] ?? 'info',
    idleMemoryRelease: onOff('idle-memory-release', values['idle-memory-release'], true),
  };
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
