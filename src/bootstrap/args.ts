// Command-line flags of `pillion proxy` → the proxy's bootstrap: node identity, ports, config source.
import { parseArgs } from 'node:util';
import type { NodeInfo } from '../../xds/compiler.js';

export interface ProxyBootstrap {
  readonly node: NodeInfo;
  readonly adminPort: number;
  readonly configFile?: string;
  readonly xds?: string[];
  /** --xds-ca: the mesh root; with it the xDS channel runs over TLS and the proxy asks the CA for its certificate. */
  readonly xdsCaFile?: string;
  /** --token: the bootstrap token's file (`pillion token`), presented for the first certificate. */
  readonly tokenFile?: string;
  readonly logLevel: string;
  readonly accessLog: string;
  /** Return unused memory to the kernel when traffic stops (src/process/idle-memory.ts). */
  readonly idleMemoryRelease: boolean;
  /** Connections open at once per listener; undefined = the proxy's default. */
  readonly maxConnections?: number;
  /** Resident memory past which the overload manager acts, in MiB; undefined = 90 % of the cgroup limit. */
  readonly overloadRssMb?: number;
  /** A static workload identity (--cert/--key/--ca): mTLS without the mesh CA. */
  readonly identityFiles?: { readonly cert: string; readonly key: string; readonly ca: string };
  /** --concurrency: worker processes serving the listeners (Envoy's --concurrency); 1 = this process alone. */
  readonly concurrency: number;
  /** --status-port: the kubelet-facing HTTP server (/healthz/ready, the app's probes); undefined = none. */
  readonly statusPort?: number;
}

/** More workers than this buys nothing on a sidecar and multiplies per-worker limits (see README). */
export const MAX_CONCURRENCY = 64;

export class UsageError extends Error {
  override name = 'UsageError';
}

function port(flag: string, value: string | undefined, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--${flag}: expected a port number 0-65535, got "${value}"`);
  return n;
}

/** A whole number flag within [min, max]. */
function count(flag: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag}: expected a whole number ${min}-${max}, got "${value}"`);
  }
  return n;
}

/** An `on|off` flag. */
export function onOff(flag: string, value: string | undefined, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (value === 'on') return true;
  if (value === 'off') return false;
  throw new UsageError(`--${flag}: expected on or off, got "${value}"`);
}

/** `--xds HOST:PORT[,HOST:PORT]`: the control servers, tried in order on each reconnect. */
function xdsServers(value: string): string[] {
  const servers = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (servers.length === 0) throw new UsageError('--xds: expected HOST:PORT[,HOST:PORT]');
  for (const server of servers) {
    // HOST:PORT or [IPv6]:PORT; gRPC would take a bare host and dial 443, which is never a control server.
    const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d+)$/.exec(server);
    const n = m === null ? NaN : Number(m[2]);
    if (!Number.isInteger(n) || n < 1 || n > 65535) throw new UsageError(`--xds: expected HOST:PORT, got "${server}"`);
  }
  return servers;
}

export const PROXY_USAGE = `usage: pillion proxy --service NAME [--config mesh.yaml | --xds HOST:PORT[,HOST:PORT]]
                     [--node-id ID] [--namespace default] [--service-account NAME] [--app-port N]
                     [--admin-port 15000] [--inbound-port 15006] [--outbound-port 15001]
                     [--log-level info] [--access-log stdout|off|FILE] [--idle-memory-release on|off]
                     [--max-connections 16384] [--overload-rss-mb N] [--xds-ca root-cert.pem [--token FILE]]
                     [--cert FILE --key FILE --ca FILE] [--interception redirect|none] [--concurrency 1]
                     [--status-port N]`;

export function parseProxyArgs(argv: string[]): ProxyBootstrap {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        'node-id': { type: 'string' },
        service: { type: 'string' },
        namespace: { type: 'string' },
        'service-account': { type: 'string' },
        xds: { type: 'string' },
        'xds-ca': { type: 'string' },
        token: { type: 'string' },
        'app-port': { type: 'string' },
        'admin-port': { type: 'string' },
        'inbound-port': { type: 'string' },
        'outbound-port': { type: 'string' },
        bootstrap: { type: 'string' },
        config: { type: 'string' },
        'log-level': { type: 'string' },
        'access-log': { type: 'string' },
        'idle-memory-release': { type: 'string' },
        'max-connections': { type: 'string' },
        'overload-rss-mb': { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        ca: { type: 'string' },
        interception: { type: 'string' },
        concurrency: { type: 'string' },
        'status-port': { type: 'string' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n${PROXY_USAGE}`);
  }
  const service = values.service;
  if (service === undefined || service === '') throw new UsageError(`--service is required\n${PROXY_USAGE}`);
  if (values.config === undefined && values.xds === undefined) {
    throw new UsageError(`one of --config or --xds is required\n${PROXY_USAGE}`);
  }
  if (values.xds !== undefined && values.config !== undefined) {
    throw new UsageError(`use one of --config (compile locally) or --xds (a control server), not both\n${PROXY_USAGE}`);
  }
  const xds = values.xds === undefined ? undefined : xdsServers(values.xds);
  if (values['xds-ca'] !== undefined && xds === undefined) throw new UsageError('--xds-ca needs --xds: it is the root the control server\'s TLS port is verified with');
  // A token is a credential: it goes only over TLS (Istio serves CSRs on its TLS port only, as our control server does).
  if (values.token !== undefined && values['xds-ca'] === undefined) throw new UsageError('--token needs --xds-ca: the token is sent only over TLS, to the control server\'s TLS port');
  if (values['xds-ca'] === '' || values.token === '') throw new UsageError('--xds-ca and --token: expected a file');
  const idleMemoryRelease = onOff('idle-memory-release', values['idle-memory-release'], true);
  const maxConnections = count('max-connections', values['max-connections'], 0, 1_000_000);
  const overloadRssMb = count('overload-rss-mb', values['overload-rss-mb'], 0, 1_048_576);
  const concurrency = count('concurrency', values.concurrency, 1, MAX_CONCURRENCY) ?? 1;
  const appPort = port('app-port', values['app-port'], undefined);
  const statusPort = port('status-port', values['status-port'], undefined);
  const identityFiles = identityFlags(values.cert, values.key, values.ca);
  const interception = values.interception ?? 'none';
  if (interception !== 'redirect' && interception !== 'none') {
    throw new UsageError(`--interception: expected redirect (the pod's traffic is redirected by \`pillion iptables\`) or none, got "${interception}"`);
  }
  const node: NodeInfo = {
    id: values['node-id'] ?? `sidecar~${service}~${process.pid}`,
    service,
    namespace: values.namespace ?? 'default',
    serviceAccount: values['service-account'] ?? service,
    ...(appPort === undefined ? {} : { appPort }),
    inboundPort: port('inbound-port', values['inbound-port'], 15006)!,
    outboundPort: port('outbound-port', values['outbound-port'], 15001)!,
    // An identity from files, or one the mesh CA will issue (--token): peers get mTLS per the mesh policy.
    ...(identityFiles === undefined && values.token === undefined ? {} : { workloadIdentity: true }),
    ...(interception === 'redirect' ? { interception: 'REDIRECT' as const } : {}),
  };
  return {
    node,
    adminPort: port('admin-port', values['admin-port'], 15000)!,
    ...(values.config === undefined ? {} : { configFile: values.config }),
    ...(xds === undefined ? {} : { xds }),
    ...(values['xds-ca'] === undefined ? {} : { xdsCaFile: values['xds-ca'] }),
    ...(values.token === undefined ? {} : { tokenFile: values.token }),
    logLevel: values['log-level'] ?? 'info',
    accessLog: values['access-log'] ?? 'stdout',
    idleMemoryRelease,
    ...(maxConnections === undefined ? {} : { maxConnections }),
    ...(overloadRssMb === undefined ? {} : { overloadRssMb }),
    ...(identityFiles === undefined ? {} : { identityFiles }),
    concurrency,
    ...(statusPort === undefined ? {} : { statusPort }),
  };
}

/** --cert, --key and --ca come together: a certificate without the bundle to verify peers is no mTLS. */
function identityFlags(cert: string | undefined, key: string | undefined, ca: string | undefined): ProxyBootstrap['identityFiles'] {
  if (cert === undefined && key === undefined && ca === undefined) return undefined;
  if (cert === undefined || key === undefined || ca === undefined) {
    throw new UsageError('--cert, --key and --ca go together (the workload certificate, its key, and the trust bundle)');
  }
  return { cert, key, ca };
}
