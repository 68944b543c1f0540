// Starts a real Pillion proxy in this process from a mesh config (YAML text), on ports the OS picks.
import { ROOT_CA_SECRET, WORKLOAD_CERT_SECRET } from '../../src/tls/secrets.js';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadLocalSnapshot } from '../../src/config/local.js';
import { Proxy, type ProxyOptions } from '../../src/proxy.js';
import type { NodeInfo, XdsResources } from '../../xds/compiler.js';
import { anyField, decodeAny, decodeMessage, encodeMessage, MESSAGE_NAMES } from '../../src/config/protos.js';

export interface RunningProxy {
  proxy: Proxy;
  /** Bound port of a listener by name (`outbound`, `inbound`, `outbound:19080`). */
  port(listener: string): number;
  adminPort: number;
  close(): Promise<void>;
}

export interface StartProxyOptions {
  service: string;
  namespace?: string;
  appPort?: number;
  /** The inbound listener's port (default 0: the OS picks), for config that must name it (authorization ports). */
  inboundPort?: number;
  admin?: boolean;
  accessLog?: string;
  /** HttpConnectionManager fields (Envoy's names) set on every HTTP listener, for what the mesh config cannot say. */
  hcm?: Record<string, unknown>;
  /** Listener fields (Envoy's names) set on every listener, e.g. listener_filters_timeout. */
  listener?: Record<string, unknown>;
  /** TcpProxy fields (Envoy's names) set on every TCP chain, e.g. idle_timeout. */
  tcpProxy?: Record<string, unknown>;
  /** TlsParameters (Envoy's names) set on every TLS transport socket the mesh compiler emits, listeners' and clusters'. */
  tlsParams?: Record<string, unknown>;
  /** Proxy options beyond what the helper sets (limits, overload thresholds). */
  proxyOptions?: Partial<ProxyOptions>;
  /**
   * A workload identity in the proxy's SecretStore (what `--cert/--key/--ca` or the CA client give a real one), so
   * the compiler emits mTLS for it; omitted = a proxy without identity (plaintext).
   */
  identity?: { readonly cert: { readonly certPem: string; readonly keyPem: string }; readonly caPem: string };
}

/** Puts a workload certificate and trust bundle where the TLS data path reads them. */
export function setIdentity(proxy: Proxy, cert: { readonly certPem: string; readonly keyPem: string }, caPem: string): void {
  proxy.secrets.set(WORKLOAD_CERT_SECRET, { kind: 'tls_certificate', certChainPem: cert.certPem, privateKeyPem: cert.keyPem });
  proxy.secrets.set(ROOT_CA_SECRET, { kind: 'validation_context', trustedCaPem: caPem });
}

interface AnyField {
  type_url: string;
  value: Uint8Array;
}
interface FilterChain {
  filters?: { name: string; typed_config?: AnyField }[];
  transport_socket?: { name: string; typed_config?: AnyField };
}

/** `socket` with `params` as its common_tls_context.tls_params, when it is a TLS socket. */
function withTlsParams(socket: { typed_config?: AnyField } | undefined, params: Record<string, unknown> | undefined): void {
  const any = socket?.typed_config;
  if (params === undefined || any === undefined) return;
  const kind = any.type_url.endsWith(MESSAGE_NAMES.DownstreamTlsContext) ? MESSAGE_NAMES.DownstreamTlsContext : any.type_url.endsWith(MESSAGE_NAMES.UpstreamTlsContext) ? MESSAGE_NAMES.UpstreamTlsContext : null;
  if (kind === null) return;
  const ctx = decodeAny<{ common_tls_context?: Record<string, unknown> }>(any);
  socket!.typed_config = anyField(kind, { ...ctx, common_tls_context: { ...ctx.common_tls_context, tls_params: params } });
}

function withFields(
  resources: XdsResources,
  hcmFields: Record<string, unknown>,
  listenerFields: Record<string, unknown>,
  tcpFields: Record<string, unknown>,
  tlsParams?: Record<string, unknown>,
): XdsResources {
  const listeners = resources.listeners.map((resource) => {
    const decoded = decodeMessage<{ filter_chains?: FilterChain[] }>(MESSAGE_NAMES.Listener, resource.value);
    const listener = { ...decoded, ...listenerFields };
    for (const chain of listener.filter_chains ?? []) {
      withTlsParams(chain.transport_socket, tlsParams);
      for (const filter of chain.filters ?? []) {
        if (filter.typed_config === undefined) continue;
        if (filter.typed_config.type_url.endsWith(MESSAGE_NAMES.TcpProxy)) {
          filter.typed_config = anyField(MESSAGE_NAMES.TcpProxy, { ...decodeAny(filter.typed_config), ...tcpFields });
          continue;
        }
        if (!filter.typed_config.type_url.endsWith(MESSAGE_NAMES.HttpConnectionManager)) continue;
        const hcm = decodeAny(filter.typed_config);
        filter.typed_config = anyField(MESSAGE_NAMES.HttpConnectionManager, { ...hcm, ...hcmFields });
      }
    }
    return { ...resource, value: encodeMessage(MESSAGE_NAMES.Listener, listener) };
  });
  if (tlsParams === undefined) return { ...resources, listeners };
  const clusters = resources.clusters.map((resource) => {
    const cluster = decodeMessage<{ transport_socket?: { name: string; typed_config?: AnyField } }>(MESSAGE_NAMES.Cluster, resource.value);
    withTlsParams(cluster.transport_socket, tlsParams);
    return { ...resource, value: encodeMessage(MESSAGE_NAMES.Cluster, cluster) };
  });
  return { ...resources, listeners, clusters };
}

export async function startProxy(meshYaml: string, opts: StartProxyOptions): Promise<RunningProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'pillion-test-'));
  const file = join(dir, 'mesh.yaml');
  writeFileSync(file, meshYaml);
  const node: NodeInfo = {
    id: `test~${opts.service}`,
    service: opts.service,
    namespace: opts.namespace ?? 'default',
    serviceAccount: opts.service,
    ...(opts.appPort === undefined ? {} : { appPort: opts.appPort }),
    inboundPort: opts.inboundPort ?? 0,
    outboundPort: 0,
    ...(opts.identity === undefined ? {} : { workloadIdentity: true }),
  };
  const local = loadLocalSnapshot(file, node);
  const proxy = new Proxy({
    adminPort: opts.admin === false ? -1 : 0,
    logger: pino({ level: 'silent' }),
    accessLog: opts.accessLog ?? 'off',
    processMetrics: false,
    drainTimeoutMs: 2_000,
    ...opts.proxyOptions,
  });
  if (opts.identity !== undefined) setIdentity(proxy, opts.identity.cert, opts.identity.caPem);
  await proxy.startAdmin();
  const resources =
    opts.hcm === undefined && opts.listener === undefined && opts.tcpProxy === undefined && opts.tlsParams === undefined
      ? local.resources
      : withFields(local.resources, opts.hcm ?? {}, opts.listener ?? {}, opts.tcpProxy ?? {}, opts.tlsParams);
  const result = await proxy.apply(resources, 'test');
  if (!result.applied) throw new Error(`config rejected: ${JSON.stringify(result.errors)}`);
  return {
    proxy,
    adminPort: proxy.adminPort,
    port(name: string): number {
      const l = proxy.listeners().find((x) => x.name === name);
      if (l === undefined) throw new Error(`no listener ${name}: ${proxy.listeners().map((x) => x.name).join(', ')}`);
      return l.port;
    },
    async close() {
      await proxy.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
