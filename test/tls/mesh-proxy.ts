// Starts a Pillion proxy in this process from a mesh config, with a workload identity in its SecretStore (what
// `--cert/--key/--ca` or the CA client give a real one), so the compiler emits mTLS for it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadLocalSnapshot } from '../../src/config/local.js';
import { Proxy } from '../../src/proxy.js';
import type { NodeInfo } from '../../xds/compiler.js';
import { ROOT_CA_SECRET, WORKLOAD_CERT_SECRET } from '../../src/tls/secrets.js';
import type { IssuedCert } from './test-ca.js';
import type { RunningProxy } from '../helpers/proxy.js';

export interface MeshProxyOptions {
  readonly service: string;
  readonly appPort?: number;
  /** The workload certificate and trust bundle; omitted = a proxy without identity (plaintext). */
  readonly identity?: { readonly cert: IssuedCert; readonly caPem: string };
  readonly accessLog?: string;
}

export function setIdentity(proxy: Proxy, cert: IssuedCert, caPem: string): void {
  proxy.secrets.set(WORKLOAD_CERT_SECRET, { kind: 'tls_certificate', certChainPem: cert.certPem, privateKeyPem: cert.keyPem });
  proxy.secrets.set(ROOT_CA_SECRET, { kind: 'validation_context', trustedCaPem: caPem });
}

export async function startMeshProxy(meshYaml: string, opts: MeshProxyOptions): Promise<RunningProxy> {
  const dir = mkdtempSync(join(tmpdir(), 'pillion-mtls-'));
  const file = join(dir, 'mesh.yaml');
  writeFileSync(file, meshYaml);
  const node: NodeInfo = {
    id: `test~${opts.service}`,
    service: opts.service,
    namespace: 'default',
    serviceAccount: opts.service,
    ...(opts.appPort === undefined ? {} : { appPort: opts.appPort }),
    inboundPort: 0,
    outboundPort: 0,
    ...(opts.identity === undefined ? {} : { workloadIdentity: true }),
  };
  const local = loadLocalSnapshot(file, node);
  const proxy = new Proxy({ adminPort: 0, logger: pino({ level: 'silent' }), accessLog: opts.accessLog ?? 'off', processMetrics: false, drainTimeoutMs: 1_000 });
  if (opts.identity !== undefined) setIdentity(proxy, opts.identity.cert, opts.identity.caPem);
  await proxy.startAdmin();
  const result = await proxy.apply(local.resources, 'test');
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

/** The value of one sample of a metric in the proxy's registry (0 when absent). */
export async function metricValue(proxy: Proxy, name: string, labels: Record<string, string>): Promise<number> {
  const metric = proxy.registry.getSingleMetric(name);
  if (metric === undefined) return 0;
  const data = await metric.get();
  const sample = data.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return sample?.value ?? 0;
}
